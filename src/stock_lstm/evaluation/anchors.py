"""Volatility anchors every probabilistic forecast is scored beside: GARCH(1,1)-t and EWMA.

Both are centred on persistence (a zero-mean daily log-return) and differ only in how they
forecast the spread, so beating them is the honest test of a network's uncertainty:

* **GARCH(1,1) with Student-t innovations** (Bollerslev 1986/1987), fitted by the ``arch``
  package by maximum likelihood on the daily log-returns of the fitting window only.
* **EWMA variance** (RiskMetrics 1994, lambda 0.94) with Gaussian innovations: no parameter
  is fitted, the variance is an exponentially weighted average of past squared returns.

The forecast at origin row ``o`` uses the returns of rows ``<= o`` only (``arch`` filters the
variance forward with the parameters fixed at the fit). The h-day log-return is the sum of
h daily returns, uncorrelated under both models, so its variance is the sum of the daily
variance forecasts; its quantiles are the innovation distribution's (a standardized t for
GARCH, exact at h = 1 and an approximation beyond, as the sum of t variables is not t).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

ANCHORS = ("garch_t", "ewma")
#: RiskMetrics' decay for daily data.
EWMA_LAMBDA = 0.94
#: ``arch`` optimizes best on returns in percent.
_PERCENT = 100.0


def anchor_quantiles(
    name: str,
    closes: np.ndarray,
    origin_rows: np.ndarray,
    fit_end_row: int,
    horizon: int,
    levels: tuple[float, ...],
) -> np.ndarray:
    """Price quantiles (n, horizon, Q) at ``levels`` from origin rows of ``closes``.

    ``fit_end_row``: the first row the fit may not see (returns of rows ``< fit_end_row``
    estimate the parameters); origins are at or after it. Raises ``ValueError`` for an
    unknown ``name``.
    """
    from arch import arch_model
    from arch.univariate import EWMAVariance, Normal, ZeroMean

    closes = np.asarray(closes, dtype=np.float64)
    rows = np.asarray(origin_rows, dtype=np.int64)
    # returns[p] is the log-return into row p + 1, so row o's return is position o - 1.
    returns = _PERCENT * np.diff(np.log(closes[: int(rows.max()) + 1]))
    last_obs = fit_end_row - 1
    first = int(rows.min()) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short or odd windows
        if name == "garch_t":
            model = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t")
            result = model.fit(last_obs=last_obs, disp="off")
            nu = float(result.params["nu"])
            standard = stats.t.ppf(levels, nu) * np.sqrt((nu - 2.0) / nu)
        elif name == "ewma":
            model = ZeroMean(returns, volatility=EWMAVariance(EWMA_LAMBDA), distribution=Normal())
            result = model.fit(last_obs=last_obs, disp="off")
            standard = stats.norm.ppf(levels)
        else:
            raise ValueError(f"unknown anchor {name!r}: choose from {', '.join(ANCHORS)}")
        forecast = result.forecast(horizon=horizon, start=first, reindex=False)
    variance = forecast.variance.to_numpy()[rows - 1 - first]
    spread = np.sqrt(np.cumsum(variance, axis=1)) / _PERCENT
    offsets = spread[..., None] * np.asarray(standard)[None, None, :]
    return closes[rows][:, None, None] * np.exp(offsets)
