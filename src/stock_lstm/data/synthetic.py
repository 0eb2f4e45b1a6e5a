"""Deterministic synthetic price files, so tests, CI notebooks and demos never need the network.

The series are geometric random walks with an optional 10-day cycle and a slow drift, written
on business days (Mon-Fri, so a few fall on exchange holidays) in either CSV layout the CSV
source reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

FLAT_COLUMNS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]


def synthetic_prices(
    ticker: str,
    *,
    rows: int = 600,
    start: str = "2018-01-02",
    seed: int = 0,
    start_price: float = 100.0,
    daily_volatility: float = 0.012,
    cycle_amplitude: float = 0.0,
) -> pd.DataFrame:
    """OHLCV on business days in yfinance's flat column layout (index ``Date``).

    ``cycle_amplitude`` adds a deterministic 10-day sine to log-prices: a pattern an LSTM can
    learn, for tests that check training actually learns something.
    """
    rng = np.random.default_rng(seed + sum(ord(c) for c in ticker))
    dates = pd.bdate_range(start=start, periods=rows, name="Date")
    steps = rng.normal(0.0003, daily_volatility, size=rows)
    log_close = np.log(start_price) + np.cumsum(steps)
    log_close += cycle_amplitude * np.sin(2 * np.pi * np.arange(rows) / 10)
    close = np.exp(log_close)
    open_ = close * np.exp(rng.normal(0, daily_volatility / 3, size=rows))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, daily_volatility / 2, size=rows)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, daily_volatility / 2, size=rows)))
    volume = rng.integers(1_000_000, 5_000_000, size=rows).astype("int64")
    return pd.DataFrame(
        {
            "Open": open_,
            "High": high,
            "Low": low,
            "Close": close,
            "Adj Close": close * 0.98,
            "Volume": volume,
        },
        index=dates,
    )


def write_flat_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``Date,Open,High,Low,Close,Adj Close,Volume`` (the layout in shared/data/prices)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index_label="Date", float_format="%.6f")
    return path


def write_yfinance_csv(frame: pd.DataFrame, ticker: str, path: Path) -> Path:
    """Write the three-header-row layout ``yf.download(...).to_csv()`` produces."""
    columns = ["Close", "High", "Low", "Open", "Volume"]
    multi = frame[columns].copy()
    multi.columns = pd.MultiIndex.from_product([columns, [ticker]], names=["Price", "Ticker"])
    multi.index.name = "Date"
    path.parent.mkdir(parents=True, exist_ok=True)
    multi.to_csv(path)
    return path


def write_fixture_folder(
    directory: Path,
    tickers: Iterable[str] = ("AAPL", "MSFT", "TEST"),
    *,
    rows: int = 600,
    seed: int = 0,
    cycle_amplitude: float = 0.02,
) -> Path:
    """A CSV source folder (``csv:DIR``) with one flat file per ticker."""
    directory.mkdir(parents=True, exist_ok=True)
    for ticker in tickers:
        frame = synthetic_prices(ticker, rows=rows, seed=seed, cycle_amplitude=cycle_amplitude)
        write_flat_csv(frame, directory / f"{ticker}.csv")
    return directory
