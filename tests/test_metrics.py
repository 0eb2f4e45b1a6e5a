"""Metrics against hand-computed values, and the persistence baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stock_lstm.evaluation.baselines import persistence_forecast
from stock_lstm.evaluation.metrics import mae, mape, rmse, score

ACTUAL = np.array([100.0, 102.0, 98.0, 101.0])
PREDICTED = np.array([101.0, 100.0, 98.0, 105.0])
# errors: -1, 2, 0, -4 -> |e| = 1, 2, 0, 4; e^2 = 1, 4, 0, 16


def test_mae_hand_computed() -> None:
    assert mae(ACTUAL, PREDICTED) == pytest.approx(7.0 / 4)


def test_rmse_hand_computed() -> None:
    assert rmse(ACTUAL, PREDICTED) == pytest.approx(math.sqrt(21.0 / 4))


def test_mape_is_in_percent() -> None:
    expected = 100.0 * (1 / 100 + 2 / 102 + 0 / 98 + 4 / 101) / 4
    assert mape(ACTUAL, PREDICTED) == pytest.approx(expected)
    assert mape([200.0], [203.0]) == pytest.approx(1.5)


def test_mape_excludes_zero_actuals() -> None:
    assert mape([0.0, 50.0], [10.0, 55.0]) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="every actual value is 0"):
        mape([0.0, 0.0], [1.0, 2.0])


def test_perfect_forecast_scores_zero() -> None:
    assert score(ACTUAL, ACTUAL.copy()) == {"mae": 0.0, "rmse": 0.0, "mape": 0.0}


def test_score_has_the_three_metrics() -> None:
    result = score(ACTUAL, PREDICTED)
    assert set(result) == {"mae", "rmse", "mape"}
    assert result["mae"] == pytest.approx(mae(ACTUAL, PREDICTED))
    assert all(isinstance(value, float) for value in result.values())


@pytest.mark.parametrize("metric", [mae, rmse, mape, score])
def test_shape_mismatch_is_rejected(metric) -> None:
    with pytest.raises(ValueError, match="same shape"):
        metric(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="same shape"):
        metric(np.ones((3, 1)), np.ones(3))


@pytest.mark.parametrize("metric", [mae, rmse, mape, score])
def test_nan_is_rejected(metric) -> None:
    with pytest.raises(ValueError, match="NaN"):
        metric(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        metric(np.ones(2), np.array([np.nan, 1.0]))


def test_empty_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        mae(np.array([]), np.array([]))


def test_persistence_returns_a_copy() -> None:
    last = np.array([10.0, 11.0, 12.0])
    forecast = persistence_forecast(last)
    np.testing.assert_array_equal(forecast, last)
    forecast[0] = -1.0
    assert last[0] == 10.0
