"""Forecast errors in the units a user reads: price units for MAE/RMSE, percent for MAPE.

Every function takes ``actual`` and ``predicted`` of the same shape (usually 1-D, one value
per trading day) and refuses NaN or inf, because a silently-NaN score is worse than an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _checked(actual: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actual_array = np.asarray(actual, dtype=np.float64)
    predicted_array = np.asarray(predicted, dtype=np.float64)
    if actual_array.shape != predicted_array.shape:
        raise ValueError(
            f"actual and predicted must have the same shape, got {actual_array.shape} "
            f"and {predicted_array.shape}"
        )
    if actual_array.size == 0:
        raise ValueError("cannot score an empty forecast")
    if not (np.isfinite(actual_array).all() and np.isfinite(predicted_array).all()):
        raise ValueError("actual and predicted must be finite (no NaN or inf)")
    return actual_array, predicted_array


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error, in the units of the inputs (prices)."""
    actual_array, predicted_array = _checked(actual, predicted)
    return float(np.mean(np.abs(actual_array - predicted_array)))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error, in the units of the inputs; punishes large misses more."""
    actual_array, predicted_array = _checked(actual, predicted)
    return float(np.sqrt(np.mean((actual_array - predicted_array) ** 2)))


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error in percent (1.5 means 1.5 %).

    Entries whose actual value is 0 are left out (their percentage error is undefined); if
    every actual value is 0 there is nothing to average and ``ValueError`` is raised.
    """
    actual_array, predicted_array = _checked(actual, predicted)
    nonzero = actual_array != 0
    if not nonzero.any():
        raise ValueError("mape is undefined when every actual value is 0")
    errors = np.abs((actual_array[nonzero] - predicted_array[nonzero]) / actual_array[nonzero])
    return float(100.0 * np.mean(errors))


@dataclass(frozen=True)
class PointMetric:
    """A point metric: how to compute it and the unit a table shows it in."""

    function: Callable[[np.ndarray, np.ndarray], float]
    #: ``price`` (the ticker's currency) or ``%``.
    unit: str


#: Every point metric, in table order. A new one added here is computed by :func:`score`,
#: recorded per horizon and shown by the CLI's and the reports' tables: nothing else to edit.
POINT_METRICS: dict[str, PointMetric] = {
    "mae": PointMetric(mae, "price"),
    "rmse": PointMetric(rmse, "price"),
    "mape": PointMetric(mape, "%"),
}


def score(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`POINT_METRICS` for one forecast, by name."""
    return {name: metric.function(actual, predicted) for name, metric in POINT_METRICS.items()}
