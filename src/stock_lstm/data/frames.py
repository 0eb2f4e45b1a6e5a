"""One canonical price frame, whatever the source handed us (yfinance, a flat CSV, a download CSV).

Every later step (cache, features, training) reads the same layout: a tz-naive daily
``DatetimeIndex`` named ``date`` and the float64 columns in ``PRICE_COLUMNS``. Prices are in
the instrument's quote currency per share; ``volume`` is shares traded that day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.errors import DataSourceError

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close", "volume")
INDEX_NAME = "date"
#: Columns that hold a price; a row where all present ones are empty is a market holiday.
OHLC_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

DROP_NO_DATE = "unparseable date"
DROP_NO_PRICES = "no prices"
DROP_BAD_CLOSE = "missing or non-positive close"
DROP_DUPLICATE = "duplicate date"

#: Source column spellings (lower-case, spaces/underscores removed) -> canonical column.
_COLUMN_ALIASES: dict[str, str] = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adjclose": "adj_close",
    "volume": "volume",
}
_DATE_ALIASES = frozenset({"date", "datetime", "timestamp"})


@dataclass(frozen=True)
class NormalizedPrices:
    """A cleaned daily price frame plus what cleaning removed, so callers can report it.

    ``frame``: index tz-naive ``DatetimeIndex`` named ``date`` (midnight, ascending, unique);
    columns exactly ``PRICE_COLUMNS``, all float64; ``adj_close`` may be all-NaN.
    ``drop_reasons`` holds only non-zero counts, e.g. ``{"no prices": 6}``.
    """

    frame: pd.DataFrame
    dropped_rows: int
    drop_reasons: dict[str, int]


def empty_price_frame() -> pd.DataFrame:
    """A frame with no rows in the canonical layout (what a cache miss loads)."""
    index = pd.DatetimeIndex([], dtype="datetime64[ns]", name=INDEX_NAME)
    return pd.DataFrame(
        {column: np.array([], dtype="float64") for column in PRICE_COLUMNS}, index=index
    )


def _canonical_column(name: Any) -> str | None:
    key = re.sub(r"[\s_]+", "", str(name)).lower()
    return _COLUMN_ALIASES.get(key)


def _select_ticker_level(raw: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """Reduce yfinance's ``(Price, Ticker)`` MultiIndex columns to flat price columns."""
    columns = raw.columns
    if not isinstance(columns, pd.MultiIndex):
        return raw
    if columns.nlevels != 2:
        raise DataSourceError(
            f"price data for {ticker} has {columns.nlevels} column header levels; expected "
            "yfinance's two (Price, Ticker): re-download with yfinance or save a flat CSV"
        )
    names = [str(name).lower() if name is not None else "" for name in columns.names]
    if "ticker" in names:
        ticker_level = names.index("ticker")
    else:
        # Unnamed levels: the price level is the one whose values look like column names.
        price_hits = [
            sum(_canonical_column(v) is not None for v in level) for level in columns.levels
        ]
        ticker_level = 0 if price_hits[1] >= price_hits[0] else 1
    symbols = [str(symbol) for symbol in columns.get_level_values(ticker_level).unique()]
    wanted = ticker.upper()
    matches = [symbol for symbol in symbols if symbol.upper() == wanted]
    if matches:
        chosen = matches[0]
    elif len(symbols) == 1:
        chosen = symbols[0]
    else:
        raise DataSourceError(
            f"price data holds tickers {symbols[:10]} but not {ticker}: "
            "download the ticker on its own or save one file per ticker"
        )
    mask = columns.get_level_values(ticker_level).astype(str) == chosen
    flat = raw.loc[:, mask]
    flat.columns = flat.columns.get_level_values(1 - ticker_level)
    return flat


def _parse_dates(values: Any) -> pd.DatetimeIndex:
    """Parse dates to tz-naive local midnight; unparseable entries become ``NaT``.

    An aware timestamp keeps its local calendar date (a 00:00-05:00 New York bar is that day).
    """
    if isinstance(values, pd.DatetimeIndex):
        parsed = values
    else:
        try:
            parsed = pd.DatetimeIndex(pd.to_datetime(values, errors="coerce"))
        except (ValueError, TypeError):
            # Mixed UTC offsets cannot share one dtype: drop each offset on its own.
            parsed = pd.DatetimeIndex([_naive_timestamp(value) for value in values])
    if parsed.tz is not None:
        parsed = parsed.tz_localize(None)
    return parsed.normalize().as_unit("ns")


def _naive_timestamp(value: Any) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return pd.NaT
    if stamp is pd.NaT:
        return pd.NaT
    return stamp.tz_localize(None) if stamp.tzinfo is not None else stamp


def _extract_dates(frame: pd.DataFrame, ticker: str) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
    """Find the dates (DatetimeIndex or a ``Date`` column) and return them with the rest."""
    date_columns = [c for c in frame.columns if str(c).strip().lower() in _DATE_ALIASES]
    if isinstance(frame.index, pd.DatetimeIndex):
        return _parse_dates(frame.index), frame.drop(columns=date_columns)
    if date_columns:
        dates = _parse_dates(frame[date_columns[0]].to_numpy())
        return dates, frame.drop(columns=date_columns)
    if str(frame.index.name).strip().lower() in _DATE_ALIASES:
        return _parse_dates(frame.index.to_numpy()), frame
    raise DataSourceError(
        f"price data for {ticker} has no Date column or date index: "
        "pass a file whose first column is Date (YYYY-MM-DD)"
    )


def _canonical_columns(frame: pd.DataFrame, ticker: str) -> dict[str, np.ndarray]:
    """Numeric float64 arrays keyed by canonical name; the first spelling of a column wins."""
    found: dict[str, np.ndarray] = {}
    for name in frame.columns:
        canonical = _canonical_column(name)
        if canonical is None or canonical in found:
            continue
        column = frame.loc[:, name]
        if isinstance(column, pd.DataFrame):
            column = column.iloc[:, 0]
        found[canonical] = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
    if "close" not in found:
        present = [str(c) for c in frame.columns][:12]
        raise DataSourceError(
            f"price data for {ticker} has no Close column (found {present}): pass data with "
            "Date,Open,High,Low,Close,Volume columns, e.g. a yfinance download"
        )
    return found


def _count(reasons: dict[str, int], reason: str, mask: np.ndarray) -> None:
    dropped = int(mask.sum())
    if dropped:
        reasons[reason] = reasons.get(reason, 0) + dropped


def normalize_ohlcv(raw: pd.DataFrame, ticker: str) -> NormalizedPrices:
    """Turn any supported price layout into the canonical frame, counting what was dropped.

    Drops rows without a date, rows whose open/high/low/close are all empty (market holidays
    in real downloads), rows whose close is missing or <= 0, and earlier copies of a repeated
    date (the last one wins). Missing open/high/low fall back to close, missing volume to 0,
    missing adjusted close to NaN. Raises ``DataSourceError`` when Close is absent or no row
    survives.
    """
    if not isinstance(raw, pd.DataFrame):
        raise DataSourceError(
            f"price data for {ticker} is {type(raw).__name__}, not a table: "
            "check the source returns a DataFrame"
        )
    flat = _select_ticker_level(raw, ticker)
    dates, values_frame = _extract_dates(flat, ticker)
    columns = _canonical_columns(values_frame, ticker)
    total = len(dates)
    reasons: dict[str, int] = {}

    keep = np.ones(total, dtype=bool)
    no_date = np.asarray(dates.isna())
    _count(reasons, DROP_NO_DATE, no_date)
    keep &= ~no_date

    present_prices = np.column_stack([columns[c] for c in OHLC_COLUMNS if c in columns])
    no_prices = keep & np.isnan(present_prices).all(axis=1)
    _count(reasons, DROP_NO_PRICES, no_prices)
    keep &= ~no_prices

    close = columns["close"]
    with np.errstate(invalid="ignore"):
        bad_close = keep & ~(close > 0)
    _count(reasons, DROP_BAD_CLOSE, bad_close)
    keep &= ~bad_close

    data: dict[str, np.ndarray] = {}
    for name in PRICE_COLUMNS:
        if name in ("open", "high", "low"):
            values = columns.get(name, close)
            values = np.where(np.isnan(values), close, values)
        elif name == "volume":
            values = np.nan_to_num(columns.get(name, np.zeros(total)), nan=0.0)
        else:
            values = columns.get(name, np.full(total, np.nan))
        data[name] = values[keep]

    index = pd.DatetimeIndex(dates[keep], name=INDEX_NAME, freq=None)
    frame = pd.DataFrame(data, index=index, columns=list(PRICE_COLUMNS))
    frame = frame.sort_index(kind="stable")
    duplicated = frame.index.duplicated(keep="last")
    _count(reasons, DROP_DUPLICATE, duplicated)
    frame = frame.loc[~duplicated].astype("float64")

    if frame.empty:
        detail = ", ".join(f"{count} {reason}" for reason, count in reasons.items()) or "no rows"
        raise DataSourceError(
            f"no usable price rows for {ticker} ({total} rows read; dropped: {detail}): "
            "check the symbol, the date range or the file contents"
        )
    return NormalizedPrices(
        frame=frame, dropped_rows=total - len(frame), drop_reasons=dict(reasons)
    )
