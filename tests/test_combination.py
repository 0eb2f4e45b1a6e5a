"""The model + strongest-anchor-so-far combination: causal choice, equal-weight bounds."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from stock_lstm.evaluation.anchors import ANCHORS
from stock_lstm.evaluation.combination import (
    FALLBACK_ANCHOR,
    choose_anchors,
    combine_with_chosen,
    winkler_percent,
)
from stock_lstm.models.online_calibration import CALIBRATION_LEVELS


def _losses(n: int, horizon: int) -> dict[str, np.ndarray]:
    return {name: np.full((n, horizon), 5.0) for name in ("garch_t", "gjr_skewt", "har_range")}


def test_the_first_block_takes_the_fallback_and_later_blocks_the_best_so_far() -> None:
    n, horizon = 20, 2
    losses = _losses(n, horizon)
    losses["garch_t"][:10] = 1.0  # best in the first block's origins
    targets = np.arange(n)[:, None] + np.arange(1, horizon + 1) + 100
    choices = choose_anchors(losses, targets, [100, 110])
    assert choices[0] == [FALLBACK_ANCHOR, FALLBACK_ANCHOR]
    # The second block starts at row 110: only targets before it count (rows 101..109).
    assert choices[1] == ["garch_t", "garch_t"]


def test_a_block_s_own_scores_never_choose_its_anchor() -> None:
    n, horizon = 20, 1
    losses = _losses(n, horizon)
    targets = np.arange(n)[:, None] + 101
    before = choose_anchors(losses, targets, [100, 110])
    losses["gjr_skewt"][10:] = 0.0  # the second block's own origins favour GJR strongly
    after = choose_anchors(losses, targets, [100, 110])
    assert before == after
    losses["gjr_skewt"][:5] = 0.0  # earlier outcomes do choose it
    assert choose_anchors(losses, targets, [100, 110])[1] == ["gjr_skewt"]


def test_each_bound_is_the_geometric_mean_of_the_model_and_the_chosen_anchor() -> None:
    model = (np.full((4, 2), 90.0), np.full((4, 2), 110.0))
    anchors = {
        "garch_t": (np.full((4, 2), 80.0), np.full((4, 2), 120.0)),
        "har_range": (np.full((4, 2), 100.0), np.full((4, 2), 100.0)),
    }
    lower, upper = combine_with_chosen(
        model, anchors, [["garch_t", "har_range"], ["har_range", "har_range"]], [2, 2]
    )
    np.testing.assert_allclose(lower[:2, 0], np.sqrt(90.0 * 80.0))
    np.testing.assert_allclose(upper[:2, 1], np.sqrt(110.0 * 100.0))
    np.testing.assert_allclose(lower[2:], np.sqrt(90.0 * 100.0))
    assert (model[0] == 90.0).all()  # the inputs are not modified
    with pytest.raises(ValueError, match="blocks cover"):
        combine_with_chosen(model, anchors, [["garch_t", "garch_t"]], [3])


def test_winkler_is_width_inside_and_adds_the_penalty_outside() -> None:
    actual = np.array([[100.0], [130.0], [np.nan]])
    lower = np.full((3, 1), 90.0)
    upper = np.full((3, 1), 110.0)
    score = winkler_percent(actual, lower, upper, np.full(3, 100.0))
    assert score[0, 0] == pytest.approx(20.0)
    assert score[1, 0] == pytest.approx(20.0 + 2 / 0.1 * 20.0)
    assert np.isnan(score[2, 0])


def test_a_served_forecast_averages_the_model_and_its_test_slice_anchor(ctx: Any) -> None:
    """The serving rule: each day's bounds are the log-space mean of the model's own and the
    anchor strongest at that horizon on the version's test slice; a version without served
    anchors (registered before the rule) serves the model's own interval."""
    from api_helpers import TINY_PARAMS

    from stock_lstm.evaluation.combination import anchor_log_bounds
    from stock_lstm.models.forecasting import make_forecast
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import load_prices, predict_ticker, register_outcome, train_ticker

    params = TrainParams.from_dict(TINY_PARAMS)
    record = register_outcome(ctx, train_ticker(ctx, "AAPL", params), force=True)
    served = record.metrics.served_anchors
    assert len(served) == params.horizon and set(served) <= set(ANCHORS)
    prices, _sync = load_prices(ctx, "AAPL")
    loaded = ctx.model_cache.get(record)
    own = make_forecast(loaded, prices, 3)
    combined = predict_ticker(ctx, "AAPL", 3)
    assert own.combined_with == [] and combined.combined_with == list(served[:3])
    close = combined.last_close
    for step, name in enumerate(combined.combined_with):
        anchor_lower, _ = anchor_log_bounds(name, prices, 3)
        level = CALIBRATION_LEVELS.index(0.9)  # the served level
        expected_lower = np.exp(
            (np.log(own.predictions[step].lower / close) + anchor_lower[0, step, level]) / 2
        )
        if step == 0:  # later days may be widened outward by the fan projection
            assert combined.predictions[0].lower == pytest.approx(close * expected_lower, 1e-5)
        assert combined.predictions[step].lower <= close * expected_lower * (1 + 1e-5)
    legacy = loaded.record.metrics.model_copy(update={"served_anchors": ()})
    loaded.record = dataclasses.replace(loaded.record, metrics=legacy)
    assert make_forecast(loaded, prices, 3, anchors=anchor_log_bounds).combined_with == []
