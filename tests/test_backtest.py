"""Walk-forward backtests, significance tests and conformal intervals: the honest numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stock_lstm.cli import main
from stock_lstm.config import Settings
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.evaluation.backtest import (
    BACKTEST_COLUMNS,
    BacktestConfig,
    FittedWindow,
    fit_window,
    walk_forward,
)
from stock_lstm.evaluation.conformal import calibrate, coverage, interval
from stock_lstm.evaluation.significance import diebold_mariano, wilson_interval
from stock_lstm.models.online_calibration import QUANTILE_LEVELS
from stock_lstm.models.training import TrainParams

TINY = TrainParams(
    epochs=3, patience=0, sequence_length=10, hidden_size=8, num_layers=1, dropout=0.0, seed=3
)


def price_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    frame = synthetic_prices("BT", rows=rows, seed=seed).astype("float64")
    frame.columns = ["open", "high", "low", "close", "adj_close", "volume"]
    frame.index.name = "date"
    return frame


class ZeroModel(torch.nn.Module):
    """Outputs zeros: for the log_return target that is exactly persistence."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.horizon)


def test_persistence_scores_rmae_exactly_one() -> None:
    def fit(window: pd.DataFrame, params: TrainParams) -> FittedWindow:
        fitted = fit_window(window, params.replace(epochs=1))
        return FittedWindow(ZeroModel(params.horizon), fitted.data)

    result = walk_forward(price_frame(), TINY, BacktestConfig(horizon=3, origins=40), fit=fit)
    assert [row.rmae for row in result.summary.horizons] == [1.0, 1.0, 1.0]
    assert result.summary.horizons[0].dm_p_value == 1.0


def test_no_fit_ever_sees_data_at_or_after_its_origin() -> None:
    seen: list[pd.Timestamp] = []

    def recording_fit(window: pd.DataFrame, params: TrainParams) -> FittedWindow:
        seen.append(window.index[-1])
        return fit_window(window, params)

    prices = price_frame()
    config = BacktestConfig(horizon=2, origins=30, step=2, refit_every=5)
    result = walk_forward(prices, TINY, config, fit=recording_fit)
    frame = result.frame
    origins = pd.to_datetime(frame["origin_date"].drop_duplicates()).to_numpy()
    assert len(seen) == 6 and len(result.summary.fit_windows) == 6
    for group, last_seen in enumerate(seen):
        first_origin = origins[group * 5]
        assert last_seen < first_origin


def test_a_changed_future_does_not_change_earlier_forecasts() -> None:
    """A series that would reveal a leak: after the first origin prices explode ten-fold.
    With one fit, forecasts from that origin must be identical on both series."""
    prices = price_frame()
    config = BacktestConfig(horizon=1, origins=20)
    base = walk_forward(prices, TINY, config)
    first_origin = pd.Timestamp(base.frame["origin_date"].iloc[0])
    shocked = prices.copy()
    shocked.loc[shocked.index > first_origin, :] *= 10.0
    changed = walk_forward(shocked, TINY, config)
    assert base.frame["model"].iloc[0] == changed.frame["model"].iloc[0]
    assert base.frame["model"].iloc[-1] != changed.frame["model"].iloc[-1]


def test_a_warm_start_never_sees_data_after_its_own_window() -> None:
    """Refits start from the previous fit's weights; prices exploding after the third
    window's first origin must not change one forecast of the windows before it."""
    prices = price_frame()
    config = BacktestConfig(horizon=1, origins=20, refit_every=5)
    base = walk_forward(prices, TINY, config)
    fits = base.summary.fit_windows
    assert [fit.warm_start for fit in fits] == [False, True, True, True]
    assert base.summary.epochs_per_fit == tuple(fit.epochs_run for fit in fits)
    third_window_origin = pd.Timestamp(base.frame["origin_date"].iloc[10])
    shocked = prices.copy()
    shocked.loc[shocked.index > third_window_origin, :] *= 10.0
    changed = walk_forward(shocked, TINY, config)
    before = base.frame["origin_date"] <= third_window_origin.date()
    assert before.sum() == 11
    pd.testing.assert_series_equal(base.frame["model"][before], changed.frame["model"][before])
    assert base.frame["model"].iloc[-1] != changed.frame["model"].iloc[-1]


def test_a_warm_start_differs_from_a_cold_refit_and_can_be_turned_off() -> None:
    prices = price_frame()
    warm = walk_forward(prices, TINY, BacktestConfig(horizon=1, origins=20, refit_every=10))
    cold = walk_forward(
        prices, TINY, BacktestConfig(horizon=1, origins=20, refit_every=10, warm_start=False)
    )
    assert [fit.warm_start for fit in cold.summary.fit_windows] == [False, False]
    first = warm.frame["origin_date"] < warm.frame["origin_date"].iloc[10]
    pd.testing.assert_series_equal(warm.frame["model"][first], cold.frame["model"][first])
    assert not np.allclose(warm.frame["model"][~first], cold.frame["model"][~first])


def test_backtest_frame_layout_and_actuals() -> None:
    prices = price_frame()
    result = walk_forward(prices, TINY, BacktestConfig(horizon=3, origins=10, step=3))
    frame = result.frame
    quantiles = tuple(f"q{level:g}" for level in QUANTILE_LEVELS)
    assert tuple(frame.columns) == (*BACKTEST_COLUMNS, *quantiles) and len(frame) == 30
    assert (frame.loc[:, quantiles].diff(axis=1).iloc[:, 1:] >= 0).all().all()
    assert frame["q0.5"].equals(frame["model"])
    closes = prices["close"]
    for row in frame.sample(5, random_state=0).itertuples():
        assert row.actual == pytest.approx(closes.loc[pd.Timestamp(row.target_date)])
        assert row.persistence == pytest.approx(closes.loc[pd.Timestamp(row.origin_date)])
    assert (frame["lower"] <= frame["model"]).all() and (frame["model"] <= frame["upper"]).all()


def test_bad_backtest_settings_are_refused() -> None:
    from stock_lstm.errors import InvalidParameterError, NotEnoughDataError

    with pytest.raises(InvalidParameterError, match="horizon"):
        BacktestConfig(horizon=0).validate()
    with pytest.raises(NotEnoughDataError, match="fewer --origins"):
        walk_forward(price_frame(rows=100), TINY, BacktestConfig(origins=500))


def test_diebold_mariano_against_hand_computation() -> None:
    a = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])
    b = np.array([0.5, -1.0, 1.0, 1.0, -0.5, 1.5])
    d = np.abs(a) - np.abs(b)
    n, mean = d.size, d.mean()
    gamma0 = np.sum((d - mean) ** 2) / n
    stat = mean / math.sqrt(gamma0 / n) * math.sqrt((n + 1 - 2 + 0) / n)
    result = diebold_mariano(a, b, 1)
    assert result.statistic == pytest.approx(stat)
    from scipy import stats

    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(stat), df=n - 1))
    assert diebold_mariano(a, a, 3).p_value == 1.0


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_conformal_coverage_on_a_random_walk_is_near_nominal() -> None:
    rng = np.random.default_rng(0)
    log_prices = np.cumsum(rng.normal(0, 0.01, size=6001))
    closes = np.exp(log_prices)
    horizon = 3
    origins = np.arange(0, 6000 - horizon)
    actual = closes[origins[:, None] + np.arange(1, horizon + 1)]
    forecast = np.repeat(closes[origins][:, None], horizon, axis=1)  # persistence
    calibration, test = slice(0, 2000), slice(2000, None)
    quantiles = calibrate(actual[calibration], forecast[calibration])["0.9"]
    lower, upper = interval(forecast[test], quantiles)
    for h in range(horizon):
        share, width = coverage(actual[test, h], lower[:, h], upper[:, h])
        assert 0.87 <= share <= 0.93 and width > 0


def test_cli_backtest_writes_csv_and_summary(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "bt"
    code = main(
        [
            "backtest", "AAPL", "--horizon", "2", "--origins", "15", "--epochs", "2",
            "--sequence-length", "10", "--hidden-size", "8", "--output-dir", str(out), "--json",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["n_origins"] == 15 and "rmae_h1" in payload["headline"]
    frame = pd.read_csv(out / "backtest.csv")
    assert len(frame) == 30 and tuple(frame.columns[: len(BACKTEST_COLUMNS)]) == BACKTEST_COLUMNS
    assert json.loads((out / "summary.json").read_text())["ticker"] == "AAPL"


def test_the_backtest_progress_bar_is_drawn_before_the_first_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first fit is the long (cold) one: the bar, with its fit count, must already show."""
    from stock_lstm.workflows import fit_progress_bar

    config = BacktestConfig(horizon=1, origins=10, refit_every=4)
    with fit_progress_bar(config, enabled=True) as progress:
        assert "0/3" in capsys.readouterr().err
        progress(1, 3)
        progress(3, 3)
    err = capsys.readouterr().err
    assert "3/3" in err and "origins=10/10" in err
    with fit_progress_bar(config, enabled=False) as progress:
        assert progress is None
