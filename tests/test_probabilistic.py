"""Probabilistic forecasts: scores, the quantile head, online calibration, anchors, features."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from stock_lstm.data.encoding import OHLCV_COLUMNS, ReturnFeaturesEncoder, ohlcv_features
from stock_lstm.data.frames import normalize_ohlcv
from stock_lstm.data.preprocessing import prepare_data
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.evaluation.anchors import FIT_WINDOW_DAYS, anchor_quantiles
from stock_lstm.evaluation.probabilistic import (
    christoffersen_test,
    interval_scores,
    kupiec_test,
    pit_values,
    quantile_scores,
)
from stock_lstm.models.lstm import LSTMForecaster, pinball_loss
from stock_lstm.models.online_calibration import (
    MIN_THETA,
    QUANTILE_LEVELS,
    CalibrationState,
    calibrated,
    interval_quantiles,
    starting_theta,
    track,
)
from stock_lstm.workflows import AppContext

# --- scores against hand-computed values -------------------------------------------------


def test_winkler_score_coverage_and_width_by_hand() -> None:
    # Last close 100, so percent of the close equals price units. 90% interval [98, 102]:
    # inside -> width 4; below by 1 -> 4 + 2/0.1 * 1 = 24; above by 3 -> 4 + 20 * 3 = 64.
    actual = np.array([100.0, 97.0, 105.0])
    lower, upper = np.full(3, 98.0), np.full(3, 102.0)
    scores = interval_scores(actual, lower, upper, 0.9, np.full(3, 100.0))
    assert scores["coverage"] == pytest.approx(1 / 3)
    assert scores["width"] == pytest.approx(4.0)
    assert scores["winkler"] == pytest.approx((4 + 24 + 64) / 3)


def test_pinball_and_crps_from_quantiles_by_hand() -> None:
    # One outcome 101 against quantiles 99 (0.1), 100 (0.5), 103 (0.9), close 100.
    # pinball: 0.1*(101-99)=0.2, 0.5*(101-100)=0.5, (1-0.9)*(103-101)=0.2 -> mean 0.3;
    # quantile CRPS = 2 * mean pinball = 0.6.
    levels = (0.1, 0.5, 0.9)
    scores = quantile_scores(
        np.array([101.0]), np.array([[99.0, 100.0, 103.0]]), levels, np.array([100.0])
    )
    assert scores["pinball"] == pytest.approx(0.3)
    assert scores["crps"] == pytest.approx(0.6)


def test_the_network_pinball_loss_matches_the_definition() -> None:
    predicted = torch.tensor([[[99.0, 100.0, 103.0]]])
    target = torch.tensor([[101.0]])
    levels = torch.tensor([0.1, 0.5, 0.9])
    assert pinball_loss(predicted, target, levels).item() == pytest.approx(0.3)


def test_kupiec_and_christoffersen_by_hand() -> None:
    # 10 misses in 100 at a 90% level is exactly nominal: LR = 0, p = 1.
    misses = np.zeros(100, dtype=bool)
    misses[::10] = True
    assert kupiec_test(misses, 0.9) == pytest.approx(1.0)
    # 30 misses in 100: LR = -2 [30 ln .1 + 70 ln .9 - 30 ln .3 - 70 ln .7].
    many = np.zeros(100, dtype=bool)
    many[:30] = True
    statistic = -2 * (
        30 * math.log(0.1) + 70 * math.log(0.9) - 30 * math.log(0.3) - 70 * math.log(0.7)
    )
    assert kupiec_test(many, 0.9) == pytest.approx(stats.chi2.sf(statistic, 1))
    # Misses in one block cluster: independence is rejected; spread evenly it is not.
    assert christoffersen_test(many) < 1e-6
    assert christoffersen_test(misses) > 0.05


def test_pit_of_a_median_outcome_is_one_half() -> None:
    quantiles = np.array([[99.0, 100.0, 101.0]])
    assert pit_values(np.array([100.0]), quantiles, (0.1, 0.5, 0.9))[0] == pytest.approx(0.5)


# --- the quantile head --------------------------------------------------------------------


def test_quantiles_never_cross_whatever_the_weights() -> None:
    torch.manual_seed(0)
    model = LSTMForecaster(n_features=5, hidden_size=8, horizon=4, quantiles=QUANTILE_LEVELS)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 5.0)  # far from any trained state
    output = model(torch.randn(64, 20, 5) * 10)
    assert output.shape == (64, 4, len(QUANTILE_LEVELS))
    assert (torch.diff(output, dim=-1) >= 0).all()
    assert torch.equal(model.point(output), output[..., QUANTILE_LEVELS.index(0.5)])


def test_a_new_quantile_head_starts_at_a_standard_normal() -> None:
    model = LSTMForecaster(hidden_size=4, horizon=2, quantiles=QUANTILE_LEVELS)
    with torch.no_grad():
        model.head.weight.zero_()
        output = model(torch.zeros(1, 5, 1))[0, 0]
    expected = stats.norm.ppf(QUANTILE_LEVELS)
    assert np.allclose(output.numpy(), expected, atol=1e-5)


def test_bad_quantile_levels_are_refused() -> None:
    from stock_lstm.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"include 0\.5"):
        LSTMForecaster(quantiles=(0.1, 0.9))


# --- online calibration ---------------------------------------------------------------------


def _volatility_doubling(n: int = 1000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Daily log-returns whose volatility doubles halfway; a static base interval."""
    rng = np.random.default_rng(seed)
    sigma = np.where(np.arange(n) < n // 2, 0.01, 0.02)
    returns = rng.normal(0.0, sigma)
    # Base 90% interval from the calm half's spread, the same every day (a static model).
    half = stats.norm.ppf(0.95) * 0.01
    lower = np.full((n, 1, 1), -half)
    upper = np.full((n, 1, 1), half)
    return returns, np.stack([lower, upper])


def test_online_calibration_reaches_nominal_coverage_after_volatility_doubles() -> None:
    returns, (lower, upper) = _volatility_doubling()
    n = returns.size
    rows = np.arange(n)
    actual = returns[:, None]  # the 1-day log-return realized after each origin
    result = track(np.zeros((1, 1)), lower, upper, actual, rows, levels=(0.9,))
    low, high = calibrated(lower, upper, result.theta_used)
    inside = (actual[:, 0] >= low[:, 0, 0]) & (actual[:, 0] <= high[:, 0, 0])
    static_inside = (actual[:, 0] >= lower[:, 0, 0]) & (actual[:, 0] <= upper[:, 0, 0])
    turbulent = slice(n // 2 + 100, n)  # after 100 days to adapt
    # The static interval holds about 59% of the turbulent closes (P(|Z| < 1.645 / 2)).
    assert static_inside[turbulent].mean() < 0.7
    assert 0.86 <= inside[turbulent].mean() <= 0.94
    assert 0.86 <= inside[: n // 2].mean() <= 0.94


def test_calibration_never_uses_a_close_after_the_origin() -> None:
    returns, (lower, upper) = _volatility_doubling(n=300)
    horizon_actual = np.column_stack([returns, np.roll(returns, -1) + returns])
    lower2 = np.repeat(lower, 2, axis=1)
    upper2 = np.repeat(upper, 2, axis=1)
    rows = np.arange(300)
    base = track(np.zeros((2, 1)), lower2, upper2, horizon_actual, rows, levels=(0.9,))
    cut = 150
    # Any outcome revealed after row `cut` (origin o, horizon h with o + h > cut) is wild.
    leaked = horizon_actual.copy()
    reveal = rows[:, None] + np.array([1, 2])[None, :]
    leaked[reveal > cut] = 1e3
    changed = track(np.zeros((2, 1)), lower2, upper2, leaked, rows, levels=(0.9,))
    assert np.array_equal(base.theta_used[: cut + 1], changed.theta_used[: cut + 1])
    assert not np.array_equal(base.theta_used[cut + 1 :], changed.theta_used[cut + 1 :])


def test_calibrated_intervals_are_always_finite_and_ordered() -> None:
    lower = np.full((5, 1, 1), -0.01)
    upper = np.full((5, 1, 1), 0.01)
    actual = np.zeros((5, 1))  # always inside: theta keeps falling
    result = track(np.zeros((1, 1)), lower, upper, actual, np.arange(5), levels=(0.9,), step=5.0)
    assert (result.theta_used >= MIN_THETA).all()
    low, high = calibrated(lower, upper, result.theta_used)
    assert np.isfinite(low).all() and np.isfinite(high).all() and (high > low).all()


def test_starting_theta_is_the_conformal_quantile_of_normalized_scores() -> None:
    # Base interval [-1, 1] (width 2); outcomes 0..1.98 -> scores (y - 1) / 2.
    y = np.linspace(0.0, 1.98, 100)[:, None]
    lower, upper = np.full((100, 1, 1), -1.0), np.full((100, 1, 1), 1.0)
    theta = starting_theta(lower, upper, y, levels=(0.9,))
    scores = np.sort(np.maximum(-1 - y[:, 0], y[:, 0] - 1) / 2)
    assert theta[0, 0] == pytest.approx(scores[math.ceil(101 * 0.9) - 1])


def test_calibration_state_round_trips_and_refuses_garbage() -> None:
    state = CalibrationState((0.5, 0.9), np.array([[0.1, -0.2]]), "2024-01-02", 7)
    again = CalibrationState.from_dict(state.to_dict())
    assert again.through == "2024-01-02" and again.updates == 7
    assert np.allclose(again.theta, state.theta)
    with pytest.raises(ValueError, match="malformed"):
        CalibrationState.from_dict({**state.to_dict(), "theta": [[math.nan, 0.0]]})


def test_interval_quantiles_are_sorted_levels_of_the_intervals() -> None:
    lower = np.array([[[-1.0, -2.0]]])  # levels 0.5, 0.9
    upper = np.array([[[1.0, 2.0]]])
    quantiles, levels = interval_quantiles(lower, upper, np.zeros((1, 1)), (0.5, 0.9))
    assert levels == (0.05, 0.25, 0.5, 0.75, 0.95)
    assert quantiles[0, 0].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]


# --- anchors --------------------------------------------------------------------------------


def test_ewma_anchor_reproduces_the_riskmetrics_band() -> None:
    # Returns of exactly +-1% forever: the EWMA variance is 1e-4 whatever its start.
    steps = np.where(np.arange(800) % 2 == 0, 0.01, -0.01)
    closes = 100 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    origin = np.array([700])
    quantiles = anchor_quantiles("ewma", closes, origin, 600, 5, (0.05, 0.5, 0.95))
    for h in (1, 5):
        expected_upper = closes[700] * np.exp(stats.norm.ppf(0.95) * 0.01 * math.sqrt(h))
        assert quantiles[0, h - 1, 2] == pytest.approx(expected_upper, rel=1e-6)
        assert quantiles[0, h - 1, 1] == pytest.approx(closes[700])


def test_garch_anchor_recovers_a_simulated_garch_t_process() -> None:
    from arch import arch_model

    simulator = arch_model(None, mean="Zero", vol="GARCH", p=1, q=1, dist="t")
    np.random.seed(7)  # arch's simulate draws from numpy's global generator
    simulated = simulator.simulate([0.05, 0.08, 0.9, 6.0], 4000, burn=500)
    returns = simulated["data"].to_numpy() / 100
    closes = 50 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    origins = np.array([3500, 3600])
    quantiles = anchor_quantiles("garch_t", closes, origins, 3500, 1, (0.05, 0.95))
    # The fitted model's own one-day forecast, by hand from its parameters and the filter,
    # estimated on the last FIT_WINDOW_DAYS returns before the first origin only.
    skip = 3499 - FIT_WINDOW_DAYS
    fit = arch_model(
        100 * np.diff(np.log(closes))[skip:], mean="Zero", vol="GARCH", p=1, q=1, dist="t"
    ).fit(last_obs=FIT_WINDOW_DAYS, disp="off")
    alpha, beta = fit.params["alpha[1]"], fit.params["beta[1]"]
    assert alpha + beta == pytest.approx(0.98, abs=0.03)
    nu = fit.params["nu"]
    forecast = fit.forecast(horizon=1, start=FIT_WINDOW_DAYS, reindex=False)
    sigma = np.sqrt(forecast.variance.iloc[0, 0])
    upper = closes[3500] * np.exp(stats.t.ppf(0.95, nu) * np.sqrt((nu - 2) / nu) * sigma / 100)
    assert quantiles[0, 0, 1] == pytest.approx(upper, rel=1e-6)
    # Only the past matters: a wild future leaves the first origin's band alone.
    wild = closes.copy()
    wild[3550:] *= 3.0
    again = anchor_quantiles("garch_t", wild, origins[:1], 3500, 1, (0.05, 0.95))
    assert again[0, 0, 1] == pytest.approx(quantiles[0, 0, 1])


def test_the_combination_averages_the_online_model_and_garch_in_log_space() -> None:
    """Each bound of "model_garch" is the geometric mean of the model's online bound and
    GARCH-t's (their average in log space), and its median that of the two medians."""
    from stock_lstm.evaluation.holdout import HoldoutForecasts
    from stock_lstm.evaluation.intervals import (
        StartingCalibration,
        interval_forecasts,
        probabilistic_scores,
    )

    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.concatenate([[0.0], np.cumsum(rng.normal(0, 0.01, 900))]))
    origins = np.arange(700, 760)
    last = closes[origins]
    horizon = 2
    rows = origins[:, None] + np.arange(1, horizon + 1)
    forecasts = HoldoutForecasts(
        origins=origins,
        origin_dates=pd.date_range("2020-01-01", periods=len(origins), freq="B"),
        last_close=last,
        forecast=last[:, None] * 1.002 * np.ones((1, horizon)),
        actual=closes[rows],
        baselines=dict.fromkeys(("persistence", "drift"), np.repeat(last[:, None], horizon, 1)),
    )
    start = StartingCalibration(
        conformal={f"{level:g}": [0.02, 0.03] for level in (0.5, 0.8, 0.9, 0.95)},
        theta=np.zeros((horizon, 4)),
    )
    intervals = interval_forecasts(forecasts, closes, start).forecasts
    combined = intervals["model_garch"]
    for side in ("lower", "upper", "centre"):
        expected = np.sqrt(getattr(intervals["model"], side) * getattr(intervals["garch_t"], side))
        np.testing.assert_allclose(getattr(combined, side), expected, rtol=1e-12)
    np.testing.assert_allclose(combined.centre, np.sqrt(forecasts.forecast * last[:, None]))
    assert (combined.lower < combined.upper).all()
    for name in ("model", "model_static", "model_garch"):  # scored as fans, as served
        lower, upper = intervals[name].lower, intervals[name].upper
        assert (np.diff(lower, axis=1) <= 0).all() and (np.diff(upper, axis=1) >= 0).all()
    scores = probabilistic_scores(forecasts, intervals)
    assert list(scores) == [
        "model",
        "model_static",
        "model_garch",
        "garch_t",
        "gjr_skewt",
        "har_range",
        "ewma",
    ]
    assert 0 <= scores["model_garch"][0].at(0.9).coverage <= 1


# --- features -------------------------------------------------------------------------------


def _ohlcv(rows: int = 400) -> pd.DataFrame:
    return normalize_ohlcv(synthetic_prices("FEAT", rows=rows), "FEAT").frame


def test_ohlcv_features_use_no_future_row() -> None:
    frame = _ohlcv()
    values = frame[list(OHLCV_COLUMNS)].to_numpy()
    base = ohlcv_features(values)
    shocked = values.copy()
    shocked[250:] *= 1.7
    changed = ohlcv_features(shocked)
    assert np.array_equal(base[:250], changed[:250], equal_nan=True)


def test_missing_high_low_and_volume_are_flagged_not_zero() -> None:
    raw = synthetic_prices("MISS", rows=300)
    raw.iloc[200, raw.columns.get_loc("High")] = np.nan
    raw.iloc[200, raw.columns.get_loc("Low")] = np.nan
    raw.iloc[210, raw.columns.get_loc("Volume")] = np.nan
    frame = normalize_ohlcv(raw, "MISS").frame
    features = ohlcv_features(frame[list(OHLCV_COLUMNS)].to_numpy())
    assert math.isnan(features[200, 1]) and features[200, 4] == 1.0
    assert math.isnan(features[210, 3]) and features[210, 4] == 1.0
    assert features[199, 4] == 0.0
    encoder = ReturnFeaturesEncoder().fit(frame[list(OHLCV_COLUMNS)].to_numpy()[:250])
    encoded = encoder.encode_inputs(frame[list(OHLCV_COLUMNS)].to_numpy())
    # Imputed at the training mean (0 after scaling), not at a raw range of 0.
    assert encoded[200, 1] == 0.0
    assert (encoded[200, 1] * encoder.std_[1] + encoder.mean_[1]) > 0


def test_the_feature_encoder_is_fitted_on_the_training_rows_only() -> None:
    frame = _ohlcv(500)
    data = prepare_data(frame, sequence_length=20, target="log_return", horizon=3, inputs="ohlcv")
    shocked = frame.copy()
    shocked.iloc[data.train_rows :, :] *= np.linspace(1, 3, len(frame) - data.train_rows)[:, None]
    shocked_data = prepare_data(
        shocked, sequence_length=20, target="log_return", horizon=3, inputs="ohlcv"
    )
    assert np.allclose(data.encoder.mean_, shocked_data.encoder.mean_)
    assert np.allclose(data.encoder.std_, shocked_data.encoder.std_)
    assert data.X_train.shape[2] == 5


def test_ohlcv_inputs_need_the_log_return_target() -> None:
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.models.training import TrainParams

    with pytest.raises(InvalidParameterError, match="log_return"):
        TrainParams(target="price", inputs="ohlcv").validate()
    with pytest.raises(InvalidParameterError, match="direct"):
        TrainParams().replace(strategy="recursive", output="quantiles").validate()


# --- the calibration a version carries between forecasts -----------------------------------


def test_predict_carries_the_calibration_forward_and_persists_it(ctx: AppContext) -> None:
    from stock_lstm.models.registry import get_active_model, load_calibration_state
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import load_prices, predict_ticker, register_outcome, train_ticker

    prices, _ = load_prices(ctx, "TEST")
    cut = prices.index[499].date()
    params = TrainParams(
        epochs=2,
        hidden_size=8,
        num_layers=1,
        sequence_length=20,
        horizon=5,
        output="quantiles",
        inputs="ohlcv",
    )
    register_outcome(ctx, train_ticker(ctx, "TEST", params, end=cut))
    record = get_active_model(ctx.db, "TEST")
    assert record.metrics.calibration is not None
    registered = CalibrationState.from_record(record.metrics.calibration)
    assert registered.through == cut.isoformat()
    assert load_calibration_state(ctx.db, record.version_id) is None

    forecast = predict_ticker(ctx, "TEST", 5)
    saved = CalibrationState.from_dict(load_calibration_state(ctx.db, record.version_id))
    assert saved.through == prices.index[-1].date().isoformat()
    # 100 new closes, each revealing one outcome per horizon (5) of earlier origins.
    assert saved.updates - registered.updates == 100 * 5
    assert not np.allclose(saved.theta, registered.theta)
    point = forecast.predictions[0]
    assert point.quantiles is not None and point.lower is not None
    bands = list(point.quantiles.values())
    assert bands == sorted(bands) and point.lower < point.close < point.upper
    assert point.quantiles["0.05"] == pytest.approx(point.lower)

    # A fresh process (empty model cache) starts from the saved state, not from training.
    ctx.model_cache.clear()
    again = predict_ticker(ctx, "TEST", 5)
    assert again.predictions[0].upper == pytest.approx(point.upper)
    assert load_calibration_state(ctx.db, record.version_id)["updates"] == saved.updates


def test_a_point_model_from_before_online_calibration_still_predicts(ctx: AppContext) -> None:
    from sqlalchemy import update

    from stock_lstm.db import ModelRegistry
    from stock_lstm.models.registry import get_model
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import predict_ticker, register_outcome, train_ticker

    params = TrainParams(
        epochs=1,
        hidden_size=8,
        num_layers=1,
        sequence_length=20,
        horizon=5,
        output="point",
        inputs="close",
    )
    record = register_outcome(ctx, train_ticker(ctx, "AAPL", params))
    # What such a row held: conformal quantiles at 0.8/0.9/0.95, no calibration state, and
    # (before the typed records) the training run's fields at the top level.
    old = {
        key: value
        for key, value in record.metrics.to_json().items()
        if key not in ("calibration", "intervals_h1", "training")
    }
    old |= record.metrics.training.model_dump()
    old["conformal"] = {k: v for k, v in old["conformal"].items() if k != "0.5"}
    with ctx.db.transaction() as session:
        session.execute(
            update(ModelRegistry)
            .where(ModelRegistry.version_id == record.version_id)
            .values(metrics=old)
        )
    ctx.model_cache.clear()
    forecast = predict_ticker(ctx, "AAPL", 3)
    assert len(forecast.predictions) == 3
    first = forecast.predictions[0]
    assert first.lower is not None and first.lower < first.close < first.upper
    again = get_model(ctx.db, record.version_id).metrics
    assert again.training == record.metrics.training and again.next_day == record.metrics.next_day
    assert first.quantiles is None  # no 50% band was ever calibrated for it


# --- the Student-t head (the likelihood alternative to the quantile head) --------------------


def test_the_student_t_head_reads_quantiles_off_its_parameters() -> None:
    torch.manual_seed(1)
    model = LSTMForecaster(
        hidden_size=4, horizon=2, quantiles=QUANTILE_LEVELS, distribution="student_t"
    )
    output = model(torch.randn(3, 6, 1))
    assert output.shape == (3, 2, 3)
    loc, scale, df = (output[..., k].detach().numpy() for k in range(3))
    assert (scale > 0).all() and (df > 2).all()
    quantiles = model.quantile_values(output.detach())
    expected = loc[..., None] + scale[..., None] * stats.t.ppf(QUANTILE_LEVELS, df[..., None])
    assert np.allclose(quantiles, expected)
    assert (np.diff(quantiles, axis=-1) > 0).all()
    assert torch.equal(model.point(output), output[..., 0])
    # Negative log-likelihood, the scipy way.
    target = torch.zeros(3, 2)
    nll = -stats.t.logpdf(0.0, df, loc=loc, scale=scale).mean()
    assert model.loss(output, target).item() == pytest.approx(nll, rel=1e-5)
    rebuilt = LSTMForecaster(**model.config())
    assert rebuilt.is_student_t and model.config()["distribution"] == "student_t"


def test_an_h_day_miss_moves_theta_one_hth_of_a_one_day_miss() -> None:
    """Consecutive h-day outcomes overlap (a volatile week is five correlated misses at h=5),
    so the tracker's step at horizon h is ``step / h``: h such misses move theta as far as
    one independent miss does at h=1."""
    from stock_lstm.models.online_calibration import CALIBRATION_LEVELS, DEFAULT_STEP

    horizon, levels = 5, len(CALIBRATION_LEVELS)
    lower = np.full((1, horizon, levels), -1.0)
    upper = np.full((1, horizon, levels), 1.0)
    actual = np.full((1, horizon), 10.0)  # every horizon misses every level
    result = track(np.zeros((horizon, levels)), lower, upper, actual, np.array([0]))
    level = np.asarray(CALIBRATION_LEVELS)
    for h in range(horizon):
        np.testing.assert_allclose(result.theta[h], DEFAULT_STEP / (h + 1) * level)
