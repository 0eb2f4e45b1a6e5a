"""Typed training records: one JSON form in the registry, every older form still read, and a
new point metric declared in one place reaching every table."""

from __future__ import annotations

import numpy as np
import pytest

from stock_lstm.cli import format_metrics_table
from stock_lstm.evaluation import eda
from stock_lstm.evaluation import metrics as point_metrics
from stock_lstm.evaluation.holdout import HoldoutForecasts, horizon_metrics
from stock_lstm.models.records import (
    GateDecision,
    HorizonScores,
    TrainingMetrics,
    TrainingRun,
)

GATE = {"status": "failed", "reason": "worse than persistence", "threshold": 1.0, "value": 1.1}
#: A row as written before the records: flat next-day scores, the run's fields at the top.
FLAT_ROW = {
    "mae": 1.5,
    "rmse": 2.0,
    "mape": 1.2,
    "n": 40,
    "rmae": 0.98,
    "persistence": {"mae": 1.53, "rmse": 2.1, "mape": 1.25},
    "drift": {"mae": 1.6, "rmse": 2.2, "mape": 1.3},
    "horizons": [
        {
            "horizon": h,
            "n": 41 - h,
            "model": {"mae": 1.5 * h, "rmse": 2.0 * h, "mape": 1.2 * h},
            "persistence": {"mae": 1.53 * h, "rmse": 2.1 * h, "mape": 1.25 * h},
            "drift": {"mae": 1.6 * h, "rmse": 2.2 * h, "mape": 1.3 * h},
            "rmae": 0.98,
            "dm_p_value": 0.4,
            "directional_ci": [0.4, 0.6],
        }
        for h in (1, 2)
    ],
    "validation": {"n": 30, "mae": 1.4, "persistence_mae": 1.45, "rmae_h1": 0.97},
    "conformal": {"0.9": [0.02, 0.03]},
    "interval_level": 0.9,
    "calibration": {"levels": [0.9], "theta": [[0.0], [0.1]], "through": "2025-12-31"},
    "intervals_h1": {"model": {"coverage": 0.9, "winkler": 8.0, "crps": 0.7}},
    "best_epoch": 7,
    "best_val_loss": 0.01,
    "epochs_run": 12,
    "stopped_early": True,
    "gate": GATE,
}


def test_a_row_from_before_the_records_reads_completely() -> None:
    record = TrainingMetrics.from_json(FLAT_ROW)
    assert record.training == TrainingRun(
        best_epoch=7, best_val_loss=0.01, epochs_run=12, stopped_early=True
    )
    assert record.gate == GateDecision.model_validate(GATE) and record.gate.failed
    assert record.validation.rmae_h1 == 0.97
    assert [row.horizon for row in record.horizons] == [1, 2]
    assert record.next_day is not None and record.next_day.dm_p_value == 0.4
    assert record.intervals_h1["model"].winkler == 8.0
    assert record.conformal == {"0.9": [0.02, 0.03]} and record.calibration is not None


def test_the_json_form_round_trips_and_keeps_the_flat_headline() -> None:
    record = TrainingMetrics.from_json(FLAT_ROW)
    stored = record.to_json()
    assert TrainingMetrics.from_json(stored) == record
    # Readers of the flat form (API clients, old notebooks) find the same next-day numbers.
    for key in ("mae", "rmse", "mape", "n", "rmae", "persistence", "drift"):
        assert stored[key] == FLAT_ROW[key], key
    assert stored["training"]["best_epoch"] == 7 and "best_epoch" not in stored


def test_the_oldest_rows_without_horizons_get_their_headline_as_horizon_1() -> None:
    oldest = {key: FLAT_ROW[key] for key in ("mae", "rmse", "mape", "n", "persistence")}
    record = TrainingMetrics.from_json(oldest)
    assert record.next_day == HorizonScores(
        horizon=1,
        n=40,
        model={"mae": 1.5, "rmse": 2.0, "mape": 1.2},
        persistence=FLAT_ROW["persistence"],
    )
    assert eda.baseline_comparison(record).loc["MAE", "model"] == 1.5


def test_an_unreadable_part_is_dropped_and_the_rest_kept(caplog: pytest.LogCaptureFixture) -> None:
    odd = {**FLAT_ROW, "gate": {"status": "maybe"}, "intervals_h1": "not a table"}
    record = TrainingMetrics.from_json(odd)
    assert record.gate is None and record.intervals_h1 == {}
    assert record.training.best_epoch == 7 and record.next_day is not None
    assert "ignoring unreadable ['gate', 'intervals_h1']" in caplog.text
    assert TrainingMetrics.from_json(None) == TrainingMetrics()


def test_records_are_frozen() -> None:
    record = TrainingMetrics.from_json(FLAT_ROW)
    with pytest.raises(ValueError, match="frozen"):
        record.interval_level = 0.5  # type: ignore[misc]


def _forecasts(n: int = 30) -> HoldoutForecasts:
    rng = np.random.default_rng(0)
    last = 100 + rng.normal(0, 1, n).cumsum()
    actual = last * np.exp(rng.normal(0, 0.01, n))
    return HoldoutForecasts(
        origins=np.arange(n),
        origin_dates=None,  # type: ignore[arg-type]
        last_close=last,
        forecast=(last * 1.001)[:, None],
        actual=actual[:, None],
        baselines={"persistence": last[:, None], "drift": (last * 1.0005)[:, None]},
    )


def test_a_new_point_metric_is_declared_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared in ``POINT_METRICS`` only, a metric is scored per horizon, survives the
    registry's JSON form and appears in the CLI's table and the reports' comparison."""

    def max_error(actual: np.ndarray, predicted: np.ndarray) -> float:
        return float(np.max(np.abs(actual - predicted)))

    metric = point_metrics.PointMetric(max_error, "price")
    monkeypatch.setitem(point_metrics.POINT_METRICS, "maxerr", metric)
    forecasts = _forecasts()
    (row,) = horizon_metrics(forecasts)
    expected = max_error(forecasts.actual[:, 0], forecasts.forecast[:, 0])
    assert row.model["maxerr"] == pytest.approx(expected)
    assert "maxerr" in row.persistence and "maxerr" in row.baselines["drift"]

    record = TrainingMetrics.from_json(TrainingMetrics(horizons=(row,)).to_json())
    assert record.next_day is not None and record.next_day.model["maxerr"] == row.model["maxerr"]
    table = format_metrics_table(record)
    assert table.splitlines()[-2].startswith("maxerr")
    assert table.splitlines()[-1].startswith("the model is ")  # the test's verdict, last
    assert "MAXERR" in eda.baseline_comparison(record).index
    # And in a backtest's tables: the CLI's and notebook 05's.
    from stock_lstm.cli.formatting import format_backtest_points
    from stock_lstm.evaluation.results import BacktestSummary

    summary = BacktestSummary(horizons=(row,))
    assert "model MAXERR" in format_backtest_points(summary).splitlines()[0]
    assert "persistence MAXERR" in summary.point_table().columns
