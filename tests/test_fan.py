"""The forecast fan widens with the horizon: an h-day return's spread cannot shrink with h."""

from __future__ import annotations

import numpy as np
import pytest
from api_helpers import TINY_PARAMS

from stock_lstm.models.online_calibration import widening
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import AppContext, predict_ticker, register_outcome, train_ticker


def test_widening_moves_bounds_outward_only_and_leaves_the_first_day_alone() -> None:
    lower = np.array([[[-0.02], [-0.05], [-0.04], [-0.06]]])  # day 3 narrower than day 2
    upper = np.array([[[0.02], [0.06], [0.05], [0.07]]])
    new_lower, new_upper = widening(lower, upper)
    assert new_lower[0, :, 0].tolist() == [-0.02, -0.05, -0.05, -0.06]
    assert new_upper[0, :, 0].tolist() == [0.02, 0.06, 0.06, 0.07]
    assert (new_lower <= lower).all() and (new_upper >= upper).all()


@pytest.mark.parametrize("output", ["student_t", "quantiles"])
def test_every_served_band_is_non_decreasing_in_width_over_30_days(
    ctx: AppContext, output: str
) -> None:
    params = TrainParams.from_dict({**TINY_PARAMS, "output": output})
    register_outcome(ctx, train_ticker(ctx, "AAPL", params), force=True)
    forecast = predict_ticker(ctx, "AAPL", 30)  # as served: combined with its anchors
    assert len(forecast.combined_with) == 30
    bands = [point.quantiles for point in forecast.predictions]
    assert all(b is not None for b in bands)
    levels = sorted(float(q) for q in bands[0])
    for q in levels:
        values = np.array([b[f"{q:g}"] for b in bands])  # type: ignore[index]
        if q < 0.5:
            assert (np.diff(values) <= 1e-6).all(), f"quantile {q} rose with the horizon"
        elif q > 0.5:
            assert (np.diff(values) >= -1e-6).all(), f"quantile {q} fell with the horizon"
    widths = np.array([p.upper - p.lower for p in forecast.predictions])  # type: ignore[operator]
    assert (np.diff(widths) >= -1e-6).all()
