"""Split-conformal prediction intervals per horizon, from validation residuals.

Residuals are taken in log-price space (``log(actual / forecast)``), so an interval is a
multiplicative band ``forecast * exp(+-q)`` that scales with the price level. With n
calibration residuals, the ``ceil((n + 1) * level) / n`` empirical quantile of their absolute
values gives finite-sample coverage of at least ``level`` for exchangeable errors (stock
returns are only roughly that; the backtest reports the coverage actually reached).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_LEVELS = (0.8, 0.9, 0.95)
#: Fewest calibration residuals a horizon needs before an interval is offered for it.
MIN_CALIBRATION = 20


def conformal_quantile(abs_residuals: np.ndarray, level: float) -> float | None:
    """The split-conformal quantile of absolute residuals, or None if there are too few."""
    values = np.sort(np.asarray(abs_residuals, dtype=np.float64))
    values = values[np.isfinite(values)]
    n = values.size
    if n < MIN_CALIBRATION:
        return None
    rank = math.ceil((n + 1) * level)
    if rank > n:
        return None
    return float(values[rank - 1])


def calibrate(
    actual: np.ndarray, forecast: np.ndarray, levels: tuple[float, ...] = DEFAULT_LEVELS
) -> dict[str, list[float | None]]:
    """Per-horizon quantiles ``{"0.9": [q_h1, q_h2, ...], ...}`` from (n, H) prices."""
    residuals = np.abs(np.log(np.asarray(actual, np.float64) / np.asarray(forecast, np.float64)))
    return {
        f"{level:g}": [
            conformal_quantile(residuals[:, h], level) for h in range(residuals.shape[1])
        ]
        for level in levels
    }


def interval(forecast: np.ndarray, quantiles: list[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds for forecasts (n, H) given per-horizon quantiles (NaN if None)."""
    point = np.asarray(forecast, dtype=np.float64)
    q = np.array([math.nan if v is None else v for v in quantiles[: point.shape[-1]]])
    return point * np.exp(-q), point * np.exp(q)


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    """(share of actuals inside [lower, upper], mean width in price units), NaNs ignored."""
    actual = np.asarray(actual, dtype=np.float64)
    valid = np.isfinite(lower) & np.isfinite(upper)
    if not valid.any():
        return math.nan, math.nan
    inside = (actual[valid] >= lower[valid]) & (actual[valid] <= upper[valid])
    return float(inside.mean()), float(np.mean(upper[valid] - lower[valid]))
