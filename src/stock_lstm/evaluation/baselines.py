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
