"""Ticker validation: the only gate between user input and file names or queries."""

from __future__ import annotations

import re

from stock_lstm.errors import InvalidTickerError

MAX_TICKER_LENGTH = 16
#: Letters, digits and the punctuation real Yahoo symbols use: ``BRK-B``, ``PETR4.SA``,
#: ``^GSPC`` (indices), ``EURUSD=X`` (currencies). Nothing that can form a path.
_TICKER_PATTERN = re.compile(r"^\^?[A-Z0-9][A-Z0-9.\-=]*$")


class Ticker(str):
    """A ticker that passed :func:`validate_ticker`: canonical, and safe in a file name or
    a query. Functions down a call chain take it as it is, so a ticker is checked once, at
    the boundary it came in through, however many layers it then passes."""

    __slots__ = ()


def validate_ticker(raw: object) -> Ticker:
    """Return the canonical (upper-case, stripped) ticker or raise ``InvalidTickerError``;
    a :class:`Ticker` is returned as it is."""
    if isinstance(raw, Ticker):
        return raw
    if not isinstance(raw, str):
        raise InvalidTickerError(f"ticker must be text, got {type(raw).__name__}")
    ticker = raw.strip().upper()
    if not ticker:
        raise InvalidTickerError("ticker is empty: pass a symbol such as AAPL or PETR4.SA")
    if len(ticker) > MAX_TICKER_LENGTH:
        raise InvalidTickerError(
            f"ticker {raw[:20]!r}... is longer than {MAX_TICKER_LENGTH} characters: "
            "pass a Yahoo Finance symbol such as AAPL"
        )
    if not _TICKER_PATTERN.match(ticker) or ".." in ticker:
        raise InvalidTickerError(
            f"ticker {raw!r} is malformed: use letters, digits and . - = ^ only "
            "(e.g. AAPL, BRK-B, PETR4.SA, ^GSPC)"
        )
    return Ticker(ticker)


def ticker_file_stem(ticker: str) -> str:
    """Map a validated ticker to a file-name-safe stem (``^GSPC`` -> ``_GSPC``)."""
    canonical = validate_ticker(ticker)
    return re.sub(r"[^A-Z0-9.\-]", "_", canonical)
