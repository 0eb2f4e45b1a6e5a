"""Test doubles for the data layer's edges: yfinance's ``Ticker``, a price source and a clock.

``FakeTicker`` replaces ``yfinance.multi.Ticker`` (the class ``yfinance.download`` builds
per symbol), so the *real* ``yfinance.download`` assembles its MultiIndex frame or its empty
error frame exactly as it does against Yahoo, without any network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import yfinance  # imported up front: its import adds a warnings filter tests must override
import yfinance.multi

from stock_lstm.data.frames import NormalizedPrices, normalize_ohlcv
from stock_lstm.data.sources import clip_to_range
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.errors import DataSourceError

NEW_YORK = "America/New_York"
#: The columns ``Ticker.history`` returns (plus ``ACTION_COLUMNS`` when actions=True).
HISTORY_COLUMNS = ["Open", "High", "Low", "Close", "Volume"]
ACTION_COLUMNS = ["Dividends", "Stock Splits"]
#: Filters for the pandas deprecation warnings yfinance 1.7's own code raises.
YFINANCE_WARNING_FILTER = "ignore::DeprecationWarning:yfinance.*"


def history_frame(
    ticker: str = "AAPL",
    *,
    rows: int = 40,
    start: str = "2024-01-02",
    tz: str = NEW_YORK,
    seed: int = 0,
) -> pd.DataFrame:
    """A frame shaped like ``yfinance.Ticker.history(auto_adjust=True, actions=True)``.

    Index: tz-aware ``DatetimeIndex`` named ``Date`` at the exchange's local midnight.
    Columns: Open, High, Low, Close (float64 prices), Volume (int64 shares), Dividends,
    Stock Splits.
    """
    flat = synthetic_prices(ticker, rows=rows, start=start, seed=seed)
    frame = flat[HISTORY_COLUMNS].copy()
    frame.index = pd.DatetimeIndex(flat.index, name="Date").tz_localize(tz)
    frame["Dividends"] = 0.0
    frame["Stock Splits"] = 0.0
    return frame


@dataclass
class TickerCalls:
    """What the fake ``Ticker`` classes were asked, in order."""

    constructed: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def make_fake_ticker(histories: dict[str, pd.DataFrame], calls: TickerCalls) -> type:
    """A ``yfinance.Ticker`` stand-in serving ``histories`` (upper-case symbol -> frame).

    ``history`` clips to ``[start, end)`` like Yahoo, drops the action columns unless
    ``actions=True``, and raises yfinance's ``YFPricesMissingError`` for an unknown symbol (which
    the real ``download`` turns into its empty frame plus a logged error).
    """

    class FakeTicker:
        _price_history = None

        def __init__(self, ticker: str, session: Any = None) -> None:
            self.ticker = ticker.upper()
            calls.constructed.append(self.ticker)

        def history(self, **kwargs: Any) -> pd.DataFrame:
            from yfinance.exceptions import YFPricesMissingError

            calls.history.append({"ticker": self.ticker, **kwargs})
            if self.ticker not in histories:
                raise YFPricesMissingError(self.ticker, "(1d 2024-01-01 -> 2024-02-01)")
            frame = histories[self.ticker]
            tz = frame.index.tz
            if kwargs.get("start") is not None:
                frame = frame.loc[frame.index >= pd.Timestamp(kwargs["start"]).tz_localize(tz)]
            if kwargs.get("end") is not None:
                frame = frame.loc[frame.index < pd.Timestamp(kwargs["end"]).tz_localize(tz)]
            if not kwargs.get("actions", True):
                frame = frame.drop(columns=ACTION_COLUMNS)
            if frame.empty:
                raise YFPricesMissingError(self.ticker, "(1d start -> end)")
            return frame.copy()

    return FakeTicker


def make_raising_ticker(error: Exception) -> type:
    """A ``yfinance.Ticker`` stand-in whose ``history`` raises ``error`` (e.g. unreachable)."""

    class RaisingTicker:
        _price_history = None

        def __init__(self, ticker: str, session: Any = None) -> None:
            self.ticker = ticker.upper()

        def history(self, **kwargs: Any) -> pd.DataFrame:
            raise error

    return RaisingTicker


def install_ticker(monkeypatch: pytest.MonkeyPatch, ticker_class: type) -> None:
    """Make the real ``yfinance.download`` build ``ticker_class`` instead of ``Ticker``."""
    monkeypatch.setattr(yfinance.multi, "Ticker", ticker_class)


def real_download() -> Callable[..., pd.DataFrame]:
    """The real ``yfinance.download`` (call only with a fake ``Ticker`` installed)."""
    return yfinance.download


class FakeClock:
    """A settable clock returning aware UTC datetimes; ``advance`` moves it forward."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2024, 3, 1, 21, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, *, hours: float = 0.0, days: float = 0.0) -> None:
        self.now = self.now + timedelta(hours=hours, days=days)


class FakeSource:
    """A ``PriceSource`` serving ``raw`` (any layout ``normalize_ohlcv`` reads), counting calls.

    Tests change ``raw`` to simulate new days or a re-adjusted history, and set ``error`` to
    simulate an outage.
    """

    def __init__(
        self, raw: pd.DataFrame, *, supports_incremental: bool = True, name: str = "fake"
    ) -> None:
        self.raw = raw
        self.supports_incremental = supports_incremental
        self.name = name
        self.error: DataSourceError | None = None
        self.calls: list[tuple[str, date | None, date | None]] = []

    def fetch(
        self, ticker: str, start: date | None = None, end: date | None = None
    ) -> NormalizedPrices:
        self.calls.append((ticker, start, end))
        if self.error is not None:
            raise self.error
        prices = normalize_ohlcv(self.raw, ticker)
        clipped = clip_to_range(prices, start, end)
        if clipped.empty:
            raise DataSourceError(f"no prices for {ticker} in {start}..{end}")
        return NormalizedPrices(clipped, prices.dropped_rows, prices.drop_reasons)
