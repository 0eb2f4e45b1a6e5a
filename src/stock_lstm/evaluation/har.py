"""HAR on the high/low range: the linear volatility anchor a network must beat.

Corsi's (2009) heterogeneous autoregression forecasts tomorrow's log variance from today's
and the mean of the last week's and month's; fed Parkinson's (1980) range variance
``RV_t = ln(H_t / L_t)^2 / (4 ln 2)`` (the squared close-to-close return on a day whose
range is missing or inverted, the last usable value on a day with neither), it is hard to
beat with four coefficients:

* OLS of ``log RV_{t+1}`` on 1, ``log RV_t``, ``log mean(RV_{t-4..t})``,
  ``log mean(RV_{t-21..t})``, targets inside the fit window;
* the variance forecast ``exp(fit + s^2 / 2)`` (log-normal mean), scaled to close-to-close
  variance by ``mean(r^2) / mean(fitted)`` over the same rows (the range misses the
  overnight gap);
* the h-day interval from the empirical quantiles of the fit window's h-day log-returns
  divided by their predicted standard deviation ``sqrt(h * variance)``; centred on
  persistence.

Written here rather than taken from a library: ``arch``'s ``HARX`` averages the *logs*
over the lags, while this model (the one the reference scores use) takes the log of the
averaged variance, and the range input, the scaling and the empirical quantiles are not in
any package; the whole fit is one least-squares solve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stock_lstm.evaluation.anchors import Anchor

#: The HAR lags: a day, a week, a month of trading days.
HAR_LAGS = (1, 5, 22)
_PARKINSON = 4.0 * np.log(2.0)


def range_variance(
    close: np.ndarray, high: np.ndarray | None, low: np.ndarray | None
) -> np.ndarray:
    """Parkinson's daily variance per row (NaN where nothing usable is known yet)."""
    close = np.asarray(close, dtype=np.float64)
    squared = np.concatenate([[np.nan], np.diff(np.log(close)) ** 2])
    if high is None or low is None:
        variance = squared
    else:
        high = np.asarray(high, dtype=np.float64)
        low = np.asarray(low, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            usable = np.isfinite(high) & np.isfinite(low) & (low > 0) & (high > low)
            parkinson = np.where(usable, np.log(high / low) ** 2 / _PARKINSON, np.nan)
        variance = np.where(usable, parkinson, squared)
    variance = np.where(variance > 0, variance, np.nan)
    return pd.Series(variance).ffill().to_numpy()


def har_features(variance: np.ndarray) -> np.ndarray:
    """(n, 4) regressors per row t: 1, then the log of the mean variance over each lag."""
    series = pd.Series(variance)
    columns = [np.ones(len(variance))]
    for lag in HAR_LAGS:
        columns.append(np.log(series.rolling(lag, min_periods=lag).mean().to_numpy()))
    return np.column_stack(columns)


class HarRange(Anchor):
    """HAR on the range variance (see the module doc)."""

    name = "har_range"
    label = "HAR on the range"

    def _fit(self) -> None:
        history = self.history
        assert history is not None
        variance = range_variance(history.close, history.high, history.low)
        self._features = har_features(variance)
        log_variance = np.log(variance)
        returns = np.concatenate([[np.nan], history.log_returns])
        # Regressors at row t, target at t + 1, both inside the fit window.
        t = np.arange(self.first_fit_row - 1, self.fit_end_row - 1)
        t = t[t >= 0]
        ok = np.isfinite(self._features[t]).all(axis=1) & np.isfinite(log_variance[t + 1])
        t = t[ok]
        if len(t) < 50:
            raise ValueError(
                f"HAR needs at least 50 usable days before row {self.fit_end_row}, got {len(t)}"
            )
        X, y = self._features[t], log_variance[t + 1]
        self.coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        residuals = y - X @ self.coef
        self.residual_variance = float(residuals @ residuals / (len(t) - X.shape[1]))
        fitted = np.exp(X @ self.coef + self.residual_variance / 2)
        self.scale = float(np.nanmean(returns[t + 1] ** 2) / fitted.mean())
        self._fit_rows = t
        self._fit_variance = self.scale * fitted

    def variance(self, rows: np.ndarray) -> np.ndarray:
        """Tomorrow's close-to-close variance forecast at each row."""
        features = self._features[np.asarray(rows, dtype=np.int64)]
        return self.scale * np.exp(features @ self.coef + self.residual_variance / 2)

    def _log_spread(
        self, rows: np.ndarray, horizon: int, levels: tuple[float, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.history is not None
        log_close = np.log(self.history.close)
        steps = np.arange(1, horizon + 1)
        standard = np.empty((horizon, len(levels)))
        for h in steps:
            keep = self._fit_rows + h <= self.fit_end_row - 1
            origins = self._fit_rows[keep]
            moves = log_close[origins + h] - log_close[origins]
            z = moves / np.sqrt(h * self._fit_variance[keep])
            standard[h - 1] = np.quantile(z, levels)
        sigma = np.sqrt(self.variance(rows)[:, None] * steps[None, :])
        return sigma, standard[None, :, :]
