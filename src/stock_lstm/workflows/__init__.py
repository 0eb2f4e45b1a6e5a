"""One function per user action (sync, train, register, predict, backtest), shared by the
CLI, the notebooks and the API; one module each.

Each function validates its input before touching the cache, the registry or the disk, so
bad input changes nothing.
"""

from stock_lstm.workflows.backtest import backtest_ticker, fit_progress_bar
from stock_lstm.workflows.context import (
    FORECAST_SLOTS,
    AppContext,
    code_version,
    fingerprint_prices,
    load_prices,
    sync_ticker,
    with_market,
)
from stock_lstm.workflows.predict import DatabaseCalibrationStore, predict_ticker
from stock_lstm.workflows.register import gate_decision, register_outcome
from stock_lstm.workflows.train import TrainOutcome, train_ticker, untrained_result

__all__ = [
    "FORECAST_SLOTS",
    "AppContext",
    "DatabaseCalibrationStore",
    "TrainOutcome",
    "backtest_ticker",
    "code_version",
    "fingerprint_prices",
    "fit_progress_bar",
    "gate_decision",
    "load_prices",
    "predict_ticker",
    "register_outcome",
    "sync_ticker",
    "train_ticker",
    "untrained_result",
    "with_market",
]
