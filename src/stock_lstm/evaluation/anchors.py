"""Classical anchors every probabilistic forecast is scored beside, behind one interface.

Each anchor is centred on persistence (a zero-mean daily log-return) and forecasts only the
spread, so beating the strongest of them is the honest test of a network's uncertainty:

* ``garch_t``: GARCH(1,1) with Student-t innovations (Bollerslev 1986/1987), ``arch``.
* ``gjr_skewt``: GJR-GARCH(1,1,1) (Glosten, Jagannathan & Runkle 1993), the leverage term
  letting bad days raise tomorrow's variance more than good ones, with Hansen's (1994)
  skewed-t innovations, ``arch``.
* ``har_range``: HAR (Corsi 2009) on Parkinson's (1980) high/low range variance, see
  ``evaluation.har``.
* ``ewma``: RiskMetrics (1994) variance, lambda 0.94, Gaussian innovations, nothing fitted.

An anchor is fitted once per refit block on at most ``FIT_WINDOW_DAYS`` of history strictly
before the block's first origin (``fit``), then filtered forward with its parameters fixed
(``predict`` at origin row ``o`` reads rows ``<= o`` only). A new anchor is one subclass
and one line in ``ANCHOR_CLASSES``: backtests, training reports, ``make evaluate`` and every
table list ``ANCHORS``.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from stock_lstm.evaluation.forecasters import Forecaster, PriceHistory, QuantileForecast

__all__ = ["ANCHORS", "ANCHOR_CLASSES", "Anchor", "PriceHistory", "QuantileForecast"]

#: At most ten years of trading days estimate an anchor: older regimes say little.
FIT_WINDOW_DAYS = 2520
#: RiskMetrics' decay for daily data.
EWMA_LAMBDA = 0.94
#: ``arch`` optimizes best on returns in percent.
_PERCENT = 100.0


class Anchor(Forecaster):
    """A classical interval forecaster: ``fit`` on the history before ``fit_end_row``, then
    ``predict`` at origins at or after it. Subclasses set ``name`` and ``label``."""

    name: ClassVar[str]
    label: ClassVar[str]

    def __init__(self) -> None:
        self.history: PriceHistory | None = None
        self.fit_end_row = 0

    def fit(self, history: PriceHistory, fit_end_row: int) -> Anchor:
        """Estimate on rows ``< fit_end_row`` (at most ``FIT_WINDOW_DAYS`` of them)."""
        self.history = history
        self.fit_end_row = int(fit_end_row)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on short or odd windows
            self._fit()
        return self

    def predict(
        self, origin_rows: np.ndarray, horizon: int, levels: tuple[float, ...]
    ) -> QuantileForecast:
        """Price quantiles of the next ``horizon`` closes at each origin row."""
        if self.history is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit first")
        rows = np.asarray(origin_rows, dtype=np.int64)
        if rows.size and int(rows.min()) < self.fit_end_row:
            raise ValueError("an origin before the end of the fit window would see its fit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma, standard = self._log_spread(rows, horizon, levels)
        offsets = sigma[..., None] * standard
        closes = self.history.close[rows]
        return QuantileForecast(tuple(levels), closes[:, None, None] * np.exp(offsets))

    @property
    def first_fit_row(self) -> int:
        """The first row whose return the fit reads (row 0 has none)."""
        return max(1, self.fit_end_row - FIT_WINDOW_DAYS)

    @abstractmethod
    def _fit(self) -> None:
        """Estimate the parameters from ``self.history`` rows before ``fit_end_row``."""

    @abstractmethod
    def _log_spread(
        self, rows: np.ndarray, horizon: int, levels: tuple[float, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The h-day log-return's standard deviation (n, H) and the standardized quantiles
        at ``levels``, broadcastable to (n, H, Q)."""


class _ArchAnchor(Anchor):
    """An ``arch`` zero-mean volatility model fitted on percent log-returns."""

    def _model(self, returns: np.ndarray):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _standard(self, levels: tuple[float, ...]) -> np.ndarray:
        """The standardized innovation quantiles at ``levels``."""
        raise NotImplementedError

    def _fit(self) -> None:
        assert self.history is not None
        self._start = self.first_fit_row - 1  # position of the first return read
        self._returns = _PERCENT * self.history.log_returns
        model = self._model(self._returns[self._start :])
        self.result = model.fit(last_obs=self.fit_end_row - 1 - self._start, disp="off")

    def _log_spread(
        self, rows: np.ndarray, horizon: int, levels: tuple[float, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        # arch's filter is causal: the variance at a row reads the returns before it only.
        first = int(rows.min()) - 1 - self._start
        forecast = self.result.forecast(horizon=horizon, start=first, reindex=False)
        variance = forecast.variance.to_numpy()[rows - 1 - self._start - first]
        sigma = np.sqrt(np.cumsum(variance, axis=1)) / _PERCENT
        return sigma, self._standard(levels)[None, None, :]


class GarchT(_ArchAnchor):
    """GARCH(1,1), Student-t innovations; the h-day variance is the sum of the daily
    forecasts and its quantiles the fitted t's (exact at h = 1, an approximation beyond)."""

    name = "garch_t"
    label = "GARCH(1,1)-t"

    def _model(self, returns: np.ndarray):  # type: ignore[no-untyped-def]
        from arch import arch_model

        return arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t")

    def _standard(self, levels: tuple[float, ...]) -> np.ndarray:
        nu = float(self.result.params["nu"])
        return np.asarray(stats.t.ppf(levels, nu) * np.sqrt((nu - 2.0) / nu))


class GjrSkewT(_ArchAnchor):
    """GJR-GARCH(1,1,1) with skewed-t innovations; ``arch``'s analytic multi-step variance
    (persistence alpha + gamma / 2 + beta) and the skewed t's standardized quantiles."""

    name = "gjr_skewt"
    label = "GJR-GARCH-skew-t"

    def _model(self, returns: np.ndarray):  # type: ignore[no-untyped-def]
        from arch import arch_model

        return arch_model(returns, mean="Zero", vol="GARCH", p=1, o=1, q=1, dist="skewt")

    def _standard(self, levels: tuple[float, ...]) -> np.ndarray:
        shape = self.result.params[["eta", "lambda"]].to_numpy()
        return np.asarray(self.result.model.distribution.ppf(np.asarray(levels), shape))


class Ewma(_ArchAnchor):
    """RiskMetrics EWMA variance, Gaussian quantiles, square-root-of-h scaling."""

    name = "ewma"
    label = "EWMA (lambda 0.94)"

    def _model(self, returns: np.ndarray):  # type: ignore[no-untyped-def]
        from arch.univariate import EWMAVariance, Normal, ZeroMean

        return ZeroMean(returns, volatility=EWMAVariance(EWMA_LAMBDA), distribution=Normal())

    def _standard(self, levels: tuple[float, ...]) -> np.ndarray:
        return np.asarray(stats.norm.ppf(levels))


#: Every anchor by name, in the order tables show them: name -> "module:Class", imported
#: only when one is made (papermill's registry style), so listing them imports nothing.
ANCHOR_CLASSES: dict[str, str] = {
    "garch_t": "stock_lstm.evaluation.anchors:GarchT",
    "gjr_skewt": "stock_lstm.evaluation.anchors:GjrSkewT",
    "har_range": "stock_lstm.evaluation.har:HarRange",
    "ewma": "stock_lstm.evaluation.anchors:Ewma",
}
#: Anchor names, in table order.
ANCHORS: tuple[str, ...] = tuple(ANCHOR_CLASSES)


def anchor_class(name: str) -> type[Anchor]:
    """The class registered as ``name``; ``ValueError`` names the choices otherwise."""
    import importlib

    try:
        module, _, attribute = ANCHOR_CLASSES[name].partition(":")
    except KeyError:
        raise ValueError(
            f"unknown anchor {name!r}: choose from {', '.join(ANCHOR_CLASSES)}"
        ) from None
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, Anchor)) or cls.name != name:
        raise TypeError(f"{ANCHOR_CLASSES[name]} is not the Anchor named {name!r}")
    return cls


def make_anchor(name: str) -> Anchor:
    """A fresh, unfitted anchor by name."""
    return anchor_class(name)()


def anchor_labels() -> dict[str, str]:
    """Each anchor's readable name, for tables and legends."""
    return {name: anchor_class(name).label for name in ANCHORS}


def anchor_quantiles(
    name: str,
    prices: PriceHistory | pd.DataFrame | np.ndarray,
    origin_rows: np.ndarray,
    fit_end_row: int,
    horizon: int,
    levels: tuple[float, ...],
) -> np.ndarray:
    """Price quantiles (n, horizon, Q) of anchor ``name`` fitted on rows ``< fit_end_row``."""
    anchor = make_anchor(name).fit(PriceHistory.of(prices), fit_end_row)
    return anchor.predict(origin_rows, horizon, levels).prices
