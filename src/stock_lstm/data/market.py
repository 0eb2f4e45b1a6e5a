"""A market-wide input: the prices of one market ticker beside every ticker's own.

Why: networks pooled over many stocks gain most over a per-stock HAR when they also see the
market's state (Zhang, Zhang, Cucuringu & Qian 2023); a linear HAR on one ticker's range
cannot. The market is a ticker like any other (``MARKET_TICKER``, the universe's broad
index ETF), synced through the same source and cache, so ``predict`` has it on the forecast
day whenever it has the ticker itself. Its high, low and close join the ticker's frame by
date (``MARKET_COLUMNS``); a date the market has no row on gets 0, which the encoder reads
as unknown (the input is then 0, its training mean), never as a price carried forward.
"""

from __future__ import annotations

import pandas as pd

from stock_lstm.data.encoding import MARKET_COLUMNS

#: The market ticker of the ``ohlcv_market`` inputs: the Nasdaq-100 ETF, the broad index
#: fund the universe folder holds (an S&P 500 fund would do as well with yfinance).
MARKET_TICKER = "QQQ"


def attach_market(frame: pd.DataFrame, market: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the market's high, low and close on its own dates (0: no market row).

    Only same-day rows are joined: nothing of a later market date reaches an earlier row."""
    aligned = market.reindex(frame.index)[["high", "low", "close"]].fillna(0.0)
    aligned.columns = list(MARKET_COLUMNS)
    return frame.drop(columns=list(MARKET_COLUMNS), errors="ignore").join(aligned)


def market_frames(frames: dict[str, pd.DataFrame], market: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every frame of a universe with the market attached."""
    return {ticker: attach_market(frame, market) for ticker, frame in frames.items()}


__all__ = ["MARKET_TICKER", "attach_market", "market_frames"]
