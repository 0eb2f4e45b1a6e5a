"""The point baselines are forecasters like the anchors: one interface, made by name, and
the same numbers the hand-written paths gave."""

from __future__ import annotations

import numpy as np
import pytest

from stock_lstm.evaluation.anchors import ANCHOR_CLASSES
from stock_lstm.evaluation.baselines import (
    BASELINE_CLASSES,
    baseline_paths,
    drift_paths,
    make_forecaster,
    mean_log_return,
    persistence_paths,
)
from stock_lstm.evaluation.forecasters import Forecaster, PriceHistory


def _history(n: int = 300) -> PriceHistory:
    rng = np.random.default_rng(2)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, n)))
    return PriceHistory(close, close * 1.01, close * 0.99)


def test_every_baseline_and_anchor_is_a_forecaster_made_by_name() -> None:
    history = _history()
    origins = np.arange(250, 260)
    for name in (*BASELINE_CLASSES, *ANCHOR_CLASSES):
        forecaster = make_forecaster(name)
        assert isinstance(forecaster, Forecaster) and forecaster.name == name
        quantiles = forecaster.fit(history, 250).predict(origins, 3, (0.05, 0.5, 0.95))
        assert quantiles.prices.shape == (10, 3, 3) and np.isfinite(quantiles.prices).all()
        assert (np.diff(quantiles.prices, axis=-1) >= 0).all(), name
    with pytest.raises(ValueError, match="choose from persistence, drift"):
        make_forecaster("naive2")


def test_the_baselines_forecast_what_their_paths_always_gave() -> None:
    history = _history()
    origins = np.arange(200, 240, 3)
    paths = baseline_paths(history, 200, origins, 5)
    last = history.close[origins]
    np.testing.assert_array_equal(paths["persistence"], persistence_paths(last, 5))
    mu = mean_log_return(history.close[:200])  # the rows before the fit's end only
    np.testing.assert_array_equal(paths["drift"], drift_paths(last, mu, 5))
    later = baseline_paths(history, 240, origins, 5)["drift"]
    assert not np.array_equal(later, paths["drift"])  # a later fit sees more rows
