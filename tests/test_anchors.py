"""The classical anchors: GJR-GARCH-skew-t and HAR on the range reproduce what they are
defined to compute, read nothing after an origin, and are one registry line each."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stock_lstm.evaluation.anchors import (
    ANCHOR_CLASSES,
    ANCHORS,
    FIT_WINDOW_DAYS,
    PriceHistory,
    anchor_class,
    anchor_quantiles,
    make_anchor,
)
from stock_lstm.evaluation.har import HarRange, har_features, range_variance

LEVELS = (0.05, 0.5, 0.95)


def _har_history(days: int = 3000, seed: int = 11) -> tuple[PriceHistory, np.ndarray]:
    """Prices whose daily variance follows a known HAR process; highs and lows whose
    Parkinson variance is that variance exactly; returns Gaussian with that variance."""
    rng = np.random.default_rng(seed)
    coef = np.array([-1.0, 0.4, 0.3, 0.2])  # intercept, day, week, month (sum of slopes 0.9)
    log_v = np.full(days, -9.0)
    for t in range(22, days - 1):
        v = np.exp(log_v[: t + 1])
        x = np.log([v[t], v[t - 4 : t + 1].mean(), v[t - 21 : t + 1].mean()])
        log_v[t + 1] = coef[0] + coef[1:] @ x + rng.normal(0, 0.3)
    variance = np.exp(log_v)
    returns = rng.normal(0, np.sqrt(variance))
    returns[0] = 0.0
    close = 40 * np.exp(np.cumsum(returns))
    half_range = np.sqrt(variance * 4 * math.log(2)) / 2
    high, low = close * np.exp(half_range), close * np.exp(-half_range)
    return PriceHistory(close, high, low), coef


def test_every_anchor_is_registered_by_name_and_lists_without_importing() -> None:
    assert ANCHORS == ("garch_t", "gjr_skewt", "har_range", "ewma")
    for name in ANCHORS:
        assert anchor_class(name).name == name
    assert ANCHOR_CLASSES["har_range"] == "stock_lstm.evaluation.har:HarRange"
    with pytest.raises(ValueError, match="choose from garch_t, gjr_skewt, har_range, ewma"):
        make_anchor("garch")


def test_parkinson_variance_of_a_known_range_and_the_fallbacks() -> None:
    close = np.array([100.0, 101.0, 102.0, 103.0, 104.0])
    high = np.array([102.0, 103.0, 101.0, np.nan, 104.0])
    low = np.array([98.0, 99.0, 103.0, 100.0, 104.0])  # row 2 inverted, 3 missing, 4 flat
    variance = range_variance(close, high, low)
    assert variance[0] == pytest.approx(math.log(102 / 98) ** 2 / (4 * math.log(2)))
    assert variance[2] == pytest.approx(math.log(102 / 101) ** 2)  # squared return
    assert variance[3] == pytest.approx(math.log(103 / 102) ** 2)
    assert variance[4] == pytest.approx(math.log(104 / 103) ** 2)
    # A close-only source: squared returns throughout (row 0 has none).
    assert np.isnan(range_variance(close, None, None)[0])


def test_har_recovers_the_coefficients_of_a_simulated_har_process() -> None:
    history, coef = _har_history()
    har = HarRange().fit(history, 2800)
    np.testing.assert_allclose(har.coef[1:], coef[1:], atol=0.08)
    assert har.coef[1:].sum() == pytest.approx(coef[1:].sum(), abs=0.03)
    # Parkinson = the return variance here, so the close-to-close scaling is about 1.
    assert har.scale == pytest.approx(1.0, abs=0.08)


def test_har_forecast_is_the_fitted_formula_by_hand() -> None:
    history, _ = _har_history()
    origin = np.array([2850])
    har = HarRange().fit(history, 2800)
    quantiles = har.predict(origin, 3, LEVELS).prices
    # By hand: OLS on the window's rows, log-normal mean, scale by mean(r^2)/mean(fitted).
    variance = range_variance(history.close, history.high, history.low)
    x = har_features(variance)
    t = np.arange(2800 - FIT_WINDOW_DAYS - 1, 2799)
    t = t[(t >= 21)]
    beta, *_ = np.linalg.lstsq(x[t], np.log(variance[t + 1]), rcond=None)
    residuals = np.log(variance[t + 1]) - x[t] @ beta
    s2 = residuals @ residuals / (len(t) - 4)
    fitted = np.exp(x[t] @ beta + s2 / 2)
    returns = np.diff(np.log(history.close))
    scale = np.mean(returns[t] ** 2) / fitted.mean()
    forecast = scale * np.exp(x[2850] @ beta + s2 / 2)
    for h in (1, 3):
        keep = t + h <= 2799
        moves = np.log(history.close[t[keep] + h] / history.close[t[keep]])
        z = moves / np.sqrt(h * scale * fitted[keep])
        expected = history.close[2850] * np.exp(np.quantile(z, 0.95) * np.sqrt(h * forecast))
        assert quantiles[0, h - 1, 2] == pytest.approx(expected, rel=1e-9)
    # Gaussian returns with the forecast variance: the empirical 5%/95% are about -+1.645.
    z95 = math.log(quantiles[0, 0, 2] / history.close[2850]) / math.sqrt(forecast)
    assert z95 == pytest.approx(stats.norm.ppf(0.95), abs=0.1)


@pytest.mark.parametrize("name", ANCHORS)
def test_an_anchor_reads_nothing_after_the_origin(name: str) -> None:
    history, _ = _har_history()
    origins = np.array([2800, 2850])
    base = anchor_quantiles(name, history, origins, 2800, 5, LEVELS)
    wild = PriceHistory(*(np.concatenate([a[:2851], 3 * a[2851:]]) for a in
                          (history.close, history.high, history.low)))  # fmt: skip
    again = anchor_quantiles(name, wild, origins, 2800, 5, LEVELS)
    np.testing.assert_allclose(again, base, rtol=1e-10)


@pytest.mark.parametrize("name", ANCHORS)
def test_an_anchor_is_scale_free_and_widens_with_the_horizon(name: str) -> None:
    history, _ = _har_history()
    origins = np.array([2800, 2900])
    base = anchor_quantiles(name, history, origins, 2800, 5, LEVELS)
    scaled = PriceHistory(history.close * 100, history.high * 100, history.low * 100)
    np.testing.assert_allclose(
        anchor_quantiles(name, scaled, origins, 2800, 5, LEVELS), base * 100, rtol=1e-5
    )
    width = np.log(base[..., 2] / base[..., 0])
    assert (np.diff(width, axis=1) > 0).all()


def test_an_origin_inside_the_fit_window_is_refused() -> None:
    history, _ = _har_history()
    anchor = make_anchor("har_range").fit(history, 2800)
    with pytest.raises(ValueError, match="before the end of the fit window"):
        anchor.predict(np.array([2799]), 1, LEVELS)


def test_gjr_skewt_recovers_a_simulated_leverage_process_and_its_quantiles() -> None:
    from arch import arch_model
    from arch.univariate import GARCH, SkewStudent, ZeroMean

    # A generator of its own: numpy's global one is moved by whatever test ran before.
    simulator = ZeroMean(
        None,
        volatility=GARCH(p=1, o=1, q=1),
        distribution=SkewStudent(seed=np.random.default_rng(5)),
    )
    simulated = simulator.simulate([0.05, 0.03, 0.1, 0.88, 7.0, -0.2], 4000, burn=500)
    returns = simulated["data"].to_numpy() / 100
    closes = 50 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    anchor = make_anchor("gjr_skewt").fit(PriceHistory(closes), 3500)
    params = anchor.result.params  # type: ignore[attr-defined]
    assert params["gamma[1]"] == pytest.approx(0.1, abs=0.06)
    assert params["lambda"] < 0  # the left-skew is found
    quantiles = anchor.predict(np.array([3500]), 1, LEVELS).prices
    # By hand: the skewed t's standardized quantile times the one-day forecast sigma.
    skip = 3499 - FIT_WINDOW_DAYS
    fit = arch_model(
        100 * np.diff(np.log(closes))[skip:], mean="Zero", vol="GARCH", p=1, o=1, q=1,
        dist="skewt",
    ).fit(last_obs=FIT_WINDOW_DAYS, disp="off")  # fmt: skip
    sigma = math.sqrt(fit.forecast(horizon=1, start=FIT_WINDOW_DAYS, reindex=False)
                      .variance.iloc[0, 0]) / 100  # fmt: skip
    shape = fit.params[["eta", "lambda"]].to_numpy()
    z = fit.model.distribution.ppf(np.array(LEVELS), shape)
    np.testing.assert_allclose(quantiles[0, 0], closes[3500] * np.exp(z * sigma), rtol=1e-6)
    assert quantiles[0, 0, 0] < closes[3500] < quantiles[0, 0, 2]
