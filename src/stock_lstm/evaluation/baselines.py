"""Naive forecasts a model has to beat before its numbers mean anything.

For daily closes the persistence forecast (tomorrow = today) is hard to beat: prices are close
to a random walk, so an LSTM that merely lags the series scores about the same.
"""

from __future__ import annotations

import numpy as np


def persistence_forecast(last_observed: np.ndarray) -> np.ndarray:
    """Tomorrow's price = today's: a float64 copy of ``last_observed`` (any shape, price units).

    ``last_observed[i]`` is the last price known before target day ``i``, so the result lines up
    element by element with the actual prices of those target days.
    """
    return np.array(last_observed, dtype=np.float64, copy=True)


def persistence_paths(last_close: np.ndarray, horizon: int) -> np.ndarray:
    """Persistence for every horizon: (n,) last closes -> (n, horizon), each row constant."""
    last = np.asarray(last_close, dtype=np.float64)
    return np.repeat(last[:, None], horizon, axis=1)


def drift_paths(last_close: np.ndarray, mean_log_return: float, horizon: int) -> np.ndarray:
    """Random walk with drift: ``last * exp(mu * h)`` for h = 1..horizon, shape (n, horizon).

    ``mean_log_return`` (mu, per trading day) must come from the data the model was trained
    on, so drift and model see the same past.
    """
    steps = np.arange(1, horizon + 1, dtype=np.float64)
    last = np.asarray(last_close, dtype=np.float64)
    return last[:, None] * np.exp(mean_log_return * steps)[None, :]


def mean_log_return(prices: np.ndarray) -> float:
    """Average daily log-return of a price series (the drift baseline's mu)."""
    values = np.asarray(prices, dtype=np.float64)
    if values.size < 2:
        return 0.0
    return float(np.mean(np.diff(np.log(values))))
