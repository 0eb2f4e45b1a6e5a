"""Plots and numbers that explain themselves (issue 22): the returns' autocorrelation band
robust to volatility clustering, the PIT histogram read in words, rMAE's band agreeing with
its test, and the forecast's legend outside the data."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from stock_lstm import plots
from stock_lstm.evaluation import eda
from stock_lstm.evaluation.probabilistic import read_pit
from stock_lstm.evaluation.significance import diebold_mariano


def _garch_returns(n: int = 3000, seed: int = 3) -> pd.Series:
    """Uncorrelated returns with strong volatility clustering (GARCH(1,1))."""
    rng = np.random.default_rng(seed)
    values, variance = np.zeros(n), 1e-4
    for t in range(n):
        values[t] = math.sqrt(variance) * rng.standard_normal()
        variance = 1e-6 + 0.15 * values[t] ** 2 + 0.83 * variance
    return pd.Series(values)


def test_the_robust_band_widens_where_volatility_clusters_and_keeps_one_in_twenty() -> None:
    returns = _garch_returns()
    robust = eda.autocorrelation(returns, 20, band="robust")
    white = eda.autocorrelation(returns, 20)
    assert (robust["upper"] > white["upper"]).all()
    assert np.allclose(robust["lower"], -robust["upper"])
    outside = ((robust["acf"] < robust["lower"]) | (robust["acf"] > robust["upper"])).sum()
    assert outside <= 2


def test_on_independent_values_the_robust_band_is_about_the_white_noise_one() -> None:
    noise = pd.Series(np.random.default_rng(1).normal(size=5000))
    robust = eda.autocorrelation(noise, 5, band="robust")
    assert np.allclose(robust["upper"], 1.959964 / math.sqrt(5000), rtol=0.1)


def test_an_unknown_band_is_a_clear_error() -> None:
    from stock_lstm.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="band must be"):
        eda.autocorrelation(pd.Series(np.arange(50.0)), 5, band="bartlett")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sample", "says"),
    [
        (lambda rng: rng.uniform(size=400), "flat within chance"),
        (lambda rng: rng.beta(2, 2, size=400), "hump; the two outer bins hold"),
        (lambda rng: rng.beta(0.5, 0.5, size=400), "a U; the two outer bins hold"),
        (lambda rng: rng.beta(1, 1.6, size=400), "forecasts run too high"),
        (lambda rng: rng.beta(1.6, 1, size=400), "forecasts run too low"),
        (lambda rng: rng.uniform(size=30), "too few to read"),
    ],
)
def test_the_pit_histogram_is_read_for_the_user(sample, says: str) -> None:  # type: ignore[no-untyped-def]
    text = read_pit(sample(np.random.default_rng(0)))
    assert says in text


def test_a_hump_says_the_intervals_are_too_wide_in_the_tails() -> None:
    text = read_pit(np.random.default_rng(0).beta(2, 2, size=400))
    assert "not flat (chi-square p = " in text and "too wide there" in text


@pytest.mark.parametrize("scale", [0.8, 0.97, 1.0, 1.03, 1.2])
def test_the_mean_difference_band_excludes_zero_exactly_when_the_test_rejects(
    scale: float,
) -> None:
    rng = np.random.default_rng(11)
    first, second = rng.normal(0, scale, 400), rng.normal(0, 1, 400)
    dm = diebold_mariano(first, second, 2)
    low, high = dm.interval()
    assert low < dm.mean_difference < high
    assert (low > 0 or high < 0) == (dm.p_value < 0.05)


def test_backtest_rows_carry_the_rmae_band_around_the_rmae() -> None:
    from stock_lstm.evaluation.holdout import HoldoutForecasts, horizon_metrics

    rng = np.random.default_rng(5)
    n, horizon = 300, 2
    last = 100 + np.cumsum(rng.normal(0, 1, n))
    actual = last[:, None] + rng.normal(0, 1, (n, horizon))
    forecasts = HoldoutForecasts(
        origins=np.arange(n),
        origin_dates=pd.bdate_range("2020-01-02", periods=n),
        actual=actual,
        forecast=last[:, None] + rng.normal(0, 0.3, (n, horizon)),
        baselines=dict.fromkeys(("persistence", "drift"), np.repeat(last[:, None], horizon, 1)),
        last_close=last,
    )
    for row in horizon_metrics(forecasts):
        low, high = row.rmae_ci
        assert low is not None and high is not None and low < row.rmae < high
        assert (high < 1 or low > 1) == (row.dm_p_value < 0.05)


def test_the_forecast_legend_sits_outside_both_panels() -> None:
    from types import SimpleNamespace

    history = pd.Series(
        100 + np.arange(60.0), index=pd.bdate_range("2024-01-02", periods=60), name="close"
    )
    points = [
        SimpleNamespace(
            date=d.date(), close=160.0 + i, lower=150.0, upper=170.0 + i, quantiles=None
        )
        for i, d in enumerate(pd.bdate_range("2024-03-26", periods=5))
    ]
    forecast = SimpleNamespace(
        ticker="KO",
        version_id="KO_1",
        last_date=date(2024, 3, 25),
        last_close=159.0,
        predictions=points,
        interval_level=0.9,
    )
    fig = plots.forecast_on_history(history, forecast)
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1 and "persistence" in " ".join(
        t.get_text() for t in fig.legends[0].get_texts()
    )
