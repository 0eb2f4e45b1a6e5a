"""Where prices come from: Yahoo Finance (via yfinance) or a folder of CSV files.

Every source returns ``NormalizedPrices`` for an inclusive date range and raises
``DataSourceError`` with a message a user can act on; nothing here touches the cache.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
import warnings
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from stock_lstm.clock import Clock, utc_now
from stock_lstm.data.frames import NormalizedPrices, normalize_ohlcv
from stock_lstm.errors import DataSourceError, InvalidParameterError, StockLSTMError
from stock_lstm.source_spec import CSV_PREFIX, SOURCE_KINDS, YAHOO, parse_source
from stock_lstm.tickers import ticker_file_stem, validate_ticker

YAHOO_SOURCE_NAME = YAHOO
#: How many characters of a yfinance error we quote back to the user.
MAX_REASON_CHARS = 150
#: How many available tickers a "file not found" message lists.
MAX_LISTED_TICKERS = 10
_CSV_OFFLINE_HINT = (
    "or read a folder of <TICKER>.csv files: --source csv:DIR on the command line, "
    'SOURCE=csv:DIR with make, source = "csv:DIR" in a notebook, or '
    "STOCK_LSTM_SOURCE=csv:DIR in the environment or a .env file"
)


class PriceSource(Protocol):
    """Anything that can hand back daily prices of one ticker for an inclusive date range."""

    #: ``"yahoo"`` or ``"csv:<dir>"``: recorded with cached rows and in reports.
    name: str
    #: True when fetching only a recent date range is cheaper than the whole history.
    supports_incremental: bool

    def fetch(
        self, ticker: str, start: date | None = None, end: date | None = None
    ) -> NormalizedPrices:
        """Prices from ``start`` to ``end`` (both inclusive); ``DataSourceError`` if none."""
        ...

    def check_ticker(self, ticker: str) -> object:
        """Refuse, in milliseconds, a ticker this source cannot have (a CSV folder without
        its file), so a run stops before any kernel starts; a remote source cannot know."""
        ...

    # A source class also has ``from_spec(argument, *, history_years, clock)``: how
    # ``source_from_spec`` builds it from the part of its spec after ``name:``.


def check_date_range(start: date | None, end: date | None) -> None:
    """Reject ``start > end`` before any work is done."""
    if start is not None and end is not None and start > end:
        raise InvalidParameterError(
            f"start {start.isoformat()} is after end {end.isoformat()}: swap them"
        )


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (29 February falls back to the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def clip_to_range(prices: NormalizedPrices, start: date | None, end: date | None) -> pd.DataFrame:
    """Rows of a normalized frame within ``[start, end]`` (inclusive, either may be open)."""
    frame = prices.frame
    if start is not None:
        frame = frame.loc[frame.index >= pd.Timestamp(start)]
    if end is not None:
        frame = frame.loc[frame.index <= pd.Timestamp(end)]
    return frame


def _shorten(text: str, limit: int = MAX_REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _yfinance_download(*args: Any, **kwargs: Any) -> pd.DataFrame:
    """Call ``yfinance.download``; imported here because importing yfinance takes ~1 s.

    yfinance 1.7 still passes ``inplace=`` to pandas 3.1, which warns on every call; the
    warning is yfinance's to fix and would only confuse users, so exactly that one is hidden.
    """
    import yfinance

    warnings.filterwarnings(
        "ignore", message="The inplace keyword", category=DeprecationWarning, module=r"yfinance\."
    )
    return yfinance.download(*args, **kwargs)


class _ErrorCapture(logging.Handler):
    """Collects the error records yfinance logs (it swallows failures) on this thread only."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.thread_id = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id:
            return
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed record must never break the download
            self.messages.append(str(record.msg))

    def first_reason(self) -> str | None:
        """The first message that says why, without yfinance's summary line or ticker list."""
        for message in self.messages:
            text = message.strip()
            if not text or re.fullmatch(r"\d+ Failed downloads?:", text):
                continue
            text = re.sub(r"^\[[^\]]*\]:\s*", "", text)
            return _shorten(text)
        return None


class YahooSource:
    """Daily prices from Yahoo Finance through ``yfinance.download`` (auto-adjusted OHLC).

    ``download`` is injectable so tests never reach the network; by default it imports
    yfinance lazily. yfinance 1.x swallows failures and returns an empty frame, so the errors
    it logs are captured and quoted in the ``DataSourceError``.
    """

    supports_incremental = True

    def __init__(
        self,
        *,
        history_years: int = 10,
        clock: Clock = utc_now,
        download: Callable[..., pd.DataFrame] | None = None,
    ) -> None:
        if history_years < 1:
            raise InvalidParameterError(
                f"history_years must be at least 1, got {history_years}: pass e.g. 10"
            )
        self.name = YAHOO_SOURCE_NAME
        self.history_years = history_years
        self._clock = clock
        self._download = download or _yfinance_download

    @classmethod
    def from_spec(cls, argument: str, *, history_years: int, clock: Clock) -> YahooSource:
        """The source a ``yahoo`` spec names."""
        return cls(history_years=history_years, clock=clock)

    def check_ticker(self, ticker: str) -> None:
        """Yahoo is only asked when prices are read."""

    def fetch(
        self, ticker: str, start: date | None = None, end: date | None = None
    ) -> NormalizedPrices:
        """Download ``[start, end]`` (inclusive; defaults: ``history_years`` ago .. today)."""
        symbol = validate_ticker(ticker)
        check_date_range(start, end)
        today = self._clock().date()
        if end is None and start is not None and start > today:
            raise InvalidParameterError(
                f"start {start.isoformat()} is in the future (today is {today.isoformat()}): "
                "pass a start date up to today"
            )
        first = start or years_before(today, self.history_years)
        last = end or today
        check_date_range(first, last)
        raw, reason = self._download_capturing_errors(symbol, first, last)
        if raw is None or not isinstance(raw, pd.DataFrame) or raw.empty:
            because = f" (yfinance said: {reason})" if reason else ""
            raise DataSourceError(
                f"no prices came back for {symbol} from Yahoo Finance for "
                f"{first.isoformat()}..{last.isoformat()}{because}: the symbol may be wrong or "
                f"Yahoo unreachable; check the symbol {_CSV_OFFLINE_HINT}"
            )
        prices = normalize_ohlcv(raw, symbol)
        clipped = clip_to_range(prices, first, last)
        if clipped.empty:
            raise DataSourceError(
                f"Yahoo Finance returned no {symbol} prices within "
                f"{first.isoformat()}..{last.isoformat()}: widen the date range"
            )
        return NormalizedPrices(
            frame=clipped, dropped_rows=prices.dropped_rows, drop_reasons=prices.drop_reasons
        )

    def _download_capturing_errors(
        self, symbol: str, first: date, last: date
    ) -> tuple[pd.DataFrame | None, str | None]:
        capture = _ErrorCapture()
        yf_logger = logging.getLogger("yfinance")
        yf_logger.addHandler(capture)
        try:
            raw = self._download(
                symbol,
                start=first.isoformat(),
                end=(last + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                auto_adjust=True,
                progress=False,
                threads=False,
                multi_level_index=True,
                actions=False,
            )
        except StockLSTMError:
            raise
        except Exception as error:
            reason = capture.first_reason() or _shorten(f"{type(error).__name__}: {error}")
            raise DataSourceError(
                f"downloading {symbol} from Yahoo Finance failed ({reason}): check the network "
                f"and the symbol, {_CSV_OFFLINE_HINT}"
            ) from error
        finally:
            yf_logger.removeHandler(capture)
        return raw, capture.first_reason()


def _is_yfinance_layout(path: Path) -> bool:
    """True for the three-header-row file ``yf.download(...).to_csv()`` writes."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        first_cells = [handle.readline().split(",", 1)[0].strip().strip('"').lower() for _ in "ab"]
    return sorted(first_cells) == ["price", "ticker"]  # group_by="ticker" swaps the two rows


def _read_price_csv(path: Path) -> pd.DataFrame:
    if _is_yfinance_layout(path):
        return pd.read_csv(path, header=[0, 1], index_col=0, encoding="utf-8-sig")
    return pd.read_csv(path, encoding="utf-8-sig")


class CsvSource:
    """Daily prices from ``<directory>/<TICKER>.csv`` (flat or yfinance download layout).

    For offline work: machines without Yahoo access point ``--source csv:DIR`` at a folder.
    """

    supports_incremental = False

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.name = f"{CSV_PREFIX}{self.directory}"

    @classmethod
    def from_spec(cls, argument: str, *, history_years: int, clock: Clock) -> CsvSource:
        """The source a ``csv:DIR`` spec names; its folder must exist (see check_folder)."""
        return cls(Path(argument)).check_folder()

    def check_folder(self) -> CsvSource:
        """This source, or a ``DataSourceError`` when its folder does not exist (or is a file).

        Checked when a ``csv:DIR`` spec is read, not only when a file is: a sync of a ticker
        whose cache is still fresh never opens a file, and a mistyped folder would go
        unnoticed until the cache expired.
        """
        if not self.directory.is_dir():
            what = "is not a folder" if self.directory.exists() else "does not exist"
            raise DataSourceError(
                f"price folder {self.directory} {what}: point the source at a folder "
                "of <TICKER>.csv files (Date,Open,High,Low,Close,Volume)"
            )
        return self

    def available_tickers(self) -> list[str]:
        """Ticker stems of the CSV files in the folder, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.csv") if p.is_file())

    def path_for(self, ticker: str) -> Path:
        """The file a ticker is read from (an exact-case name wins, else a case-insensitive one)."""
        stem = ticker_file_stem(ticker)
        exact = self.directory / f"{stem}.csv"
        if exact.is_file() or not self.directory.is_dir():
            return exact
        for candidate in self.directory.glob("*.csv"):
            if candidate.stem.upper() == stem and candidate.is_file():
                return candidate
        return exact

    def fetch(
        self, ticker: str, start: date | None = None, end: date | None = None
    ) -> NormalizedPrices:
        """Read the ticker's file and keep ``[start, end]`` (inclusive; open ends = all)."""
        symbol = validate_ticker(ticker)
        check_date_range(start, end)
        path = self.check_ticker(symbol)
        try:
            raw = _read_price_csv(path)
        except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError) as error:
            raise DataSourceError(
                f"cannot read price file {path} ({_shorten(str(error))}): save it as CSV with "
                "a header Date,Open,High,Low,Close,Volume or as a yfinance download"
            ) from error
        try:
            prices = normalize_ohlcv(raw, symbol)
        except DataSourceError as error:
            raise DataSourceError(f"price file {path}: {error}") from error
        clipped = clip_to_range(prices, start, end)
        if clipped.empty:
            first, last = prices.frame.index[0].date(), prices.frame.index[-1].date()
            raise DataSourceError(
                f"price file {path} covers {first}..{last}, nothing within "
                f"{start or '...'}..{end or '...'}: pick dates inside the file's range"
            )
        return NormalizedPrices(
            frame=clipped, dropped_rows=prices.dropped_rows, drop_reasons=prices.drop_reasons
        )

    def check_ticker(self, ticker: str) -> Path:
        """The ticker's file, or a ``DataSourceError`` saying what is there instead (with the
        closest names: ``APPL`` -> did you mean AAPL?). Cheap: commands call it before they
        start a notebook kernel."""
        symbol = validate_ticker(ticker)
        self.check_folder()
        path = self.path_for(symbol)
        if not path.is_file():
            close = difflib.get_close_matches(symbol, self.available_tickers(), n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise DataSourceError(f"no price file {path} for {symbol}{hint}: {self._listing()}")
        return path

    def _listing(self) -> str:
        tickers = self.available_tickers()
        if not tickers:
            return f"the folder {self.directory} holds no .csv files; add <TICKER>.csv files"
        shown = ", ".join(tickers[:MAX_LISTED_TICKERS])
        hidden = len(tickers) - MAX_LISTED_TICKERS
        more = f" and {hidden} more" if hidden > 0 else ""
        return f"tickers available in {self.directory}: {shown}{more}"


def source_from_spec(spec: str, *, history_years: int = 10, clock: Clock = utc_now) -> PriceSource:
    """Build a source from its spec (the ``--source`` option's value): the kind named in
    ``source_spec.SOURCE_KINDS`` builds itself from the rest (``from_spec``).

    A ``csv:DIR`` whose folder does not exist is refused here (``DataSourceError``), so
    every command, server and notebook that names it stops before doing anything.
    """
    import importlib

    try:
        parsed = parse_source(spec)
    except ValueError as exc:
        raise InvalidParameterError(str(exc)) from None
    module, _, attribute = SOURCE_KINDS[parsed.kind].path.partition(":")
    kind = getattr(importlib.import_module(module), attribute)
    return kind.from_spec(parsed.argument, history_years=history_years, clock=clock)  # type: ignore[no-any-return]
