"""Naive forecasts a model has to beat before its numbers mean anything, as forecasters
(``evaluation.forecasters``) like the anchors.

For daily closes the persistence forecast (tomorrow = today) is hard to beat: prices are close
to a random walk, so an LSTM that merely lags the series scores about the same.
"""

from __future__ import annotations

import numpy as np

from stock_lstm.evaluation.forecasters import Forecaster, PriceHistory, QuantileForecast


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


class Persistence(Forecaster):
    """Tomorrow = today, at every horizon: the random walk every model must beat."""

    name = "persistence"
    label = "persistence (tomorrow = today)"

    def fit(self, history: PriceHistory, fit_end_row: int) -> Persistence:
        self.history = history  # nothing to estimate
        return self

    def predict(
        self, origin_rows: np.ndarray, horizon: int, levels: tuple[float, ...]
    ) -> QuantileForecast:
        paths = persistence_paths(self.history.close[np.asarray(origin_rows)], horizon)
        return QuantileForecast(tuple(levels), np.repeat(paths[..., None], len(levels), axis=2))


class Drift(Forecaster):
    """The random walk with drift: the mean daily log-return of the rows before
    ``fit_end_row`` (the model's training rows: drift and model see the same past)."""

    name = "drift"
    label = "random walk with drift"

    def fit(self, history: PriceHistory, fit_end_row: int) -> Drift:
        self.history = history
        self.mu = mean_log_return(history.close[:fit_end_row])
        return self

    def predict(
        self, origin_rows: np.ndarray, horizon: int, levels: tuple[float, ...]
    ) -> QuantileForecast:
        last = self.history.close[np.asarray(origin_rows)]
        paths = drift_paths(last, self.mu, horizon)
        return QuantileForecast(tuple(levels), np.repeat(paths[..., None], len(levels), axis=2))


#: The point baselines every model is scored beside, by name: name -> "module:Class".
BASELINE_CLASSES: dict[str, str] = {
    "persistence": "stock_lstm.evaluation.baselines:Persistence",
    "drift": "stock_lstm.evaluation.baselines:Drift",
}


def make_baseline(name: str) -> Forecaster:
    """A fresh point baseline by name; ``ValueError`` names the choices otherwise."""
    import importlib

    if name not in BASELINE_CLASSES:
        raise ValueError(f"unknown forecaster {name!r}: choose from {', '.join(BASELINE_CLASSES)}")
    module, _, attribute = BASELINE_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)()  # type: ignore[no-any-return]


def make_forecaster(name: str) -> Forecaster:
    """A fresh forecaster by name: a point baseline or an anchor."""
    from stock_lstm.evaluation.anchors import ANCHOR_CLASSES, make_anchor

    return make_anchor(name) if name in ANCHOR_CLASSES else make_baseline(name)


def baseline_paths(
    history: PriceHistory, fit_end_row: int, origin_rows: np.ndarray, horizon: int
) -> dict[str, np.ndarray]:
    """Each point baseline fitted on the rows before ``fit_end_row``: its (n, horizon) path
    from every origin row, by name."""
    paths = {}
    for name in BASELINE_CLASSES:
        fitted = make_baseline(name).fit(history, fit_end_row)
        paths[name] = fitted.predict(origin_rows, horizon, (0.5,)).median
    return paths
