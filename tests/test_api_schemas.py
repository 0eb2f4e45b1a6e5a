"""The exact JSON each API response model makes of a domain record.

Why: the response models are built from the records (``ModelRecord``, ``JobRecord``,
``Forecast``, ``CacheStatus``, ``SyncResult``) by pydantic, not field by field, so a renamed
or retyped record field would change what clients receive without any route test noticing.
These expectations are literal: the JSON, keys in order, must stay exactly this.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from stock_lstm.api.schemas import (
    CacheStatusResponse,
    ForecastResponse,
    JobResponse,
    ModelResponse,
    SyncResponse,
)
from stock_lstm.data.cache import CacheStatus, SyncResult
from stock_lstm.models.forecasting import Forecast, ForecastPoint
from stock_lstm.models.jobs import JobRecord
from stock_lstm.models.records import GateDecision, TrainingMetrics
from stock_lstm.models.registry import ModelRecord

CREATED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
GATE_JSON = {"status": "failed", "reason": "rMAE 1.07 > 1.0", "threshold": 1.0, "value": 1.07}
GATE = GateDecision.model_validate(GATE_JSON)
#: A registry row's metrics as written before the typed records (flat next-day scores, the
#: training run at the top level): read as a record, sent in the one JSON form.
LEGACY_METRICS = {
    **{"mae": 1.5, "rmse": 2.0, "mape": 1.2, "n": 20, "rmae": 0.98, "best_epoch": 7},
    "persistence": {"mae": 1.53, "rmse": 2.1, "mape": 1.25},
    "gate": {"status": "failed", "value": 1.07, "threshold": 1.0, "reason": "rMAE 1.07 > 1.0"},
}
NO_SCORE = {
    "rmae_ci": [None, None],
    "directional_accuracy": None,
    "directional_ci": [None, None],
}
NO_SCORE |= {"dm_statistic": None, "dm_p_value": None, "predicted_move_std": None}
NO_SCORE |= {"actual_move_std": None, "coverage": None, "interval_width": None}
METRICS_JSON = {
    "horizons": [
        {
            "horizon": 1,
            "n": 20,
            "model": {"mae": 1.5, "rmse": 2.0, "mape": 1.2},
            "baselines": {"persistence": {"mae": 1.53, "rmse": 2.1, "mape": 1.25}},
            "rmae": 0.98,
            **NO_SCORE,
            # computed from the baselines: persistence (rMAE's base) and the others' rMAE
            "persistence": {"mae": 1.53, "rmse": 2.1, "mape": 1.25},
            "baseline_rmae": {},
        }
    ],
    "validation": {"n": None, "mae": None, "persistence_mae": None, "rmae_h1": None},
    "conformal": {},
    "interval_level": None,
    "calibration": None,
    "intervals_h1": {},
    "gate": GATE_JSON,
    "training": {"best_epoch": 7, "best_val_loss": None, "epochs_run": None, "stopped_early": None},
    "served_anchors": [],
    # the next day's scores, repeated at the top for readers of the flat form
    **{"mae": 1.5, "rmse": 2.0, "mape": 1.2, "n": 20, "rmae": 0.98},
    "persistence": {"mae": 1.53, "rmse": 2.1, "mape": 1.25},
    "drift": {},
}


def model_record(*, report_path: str | None = "/r/AAPL/run/02_train.html") -> ModelRecord:
    return ModelRecord(
        version_id="AAPL-20260105-abc",
        ticker="AAPL",
        created_at=CREATED,
        model_path="/m/AAPL-20260105-abc/model.pt",
        scaler_path="/m/AAPL-20260105-abc/scaler.json",
        model_sha256="m" * 64,
        scaler_sha256="s" * 64,
        params={"epochs": 3, "seed": 7},
        metrics=TrainingMetrics.from_json(LEGACY_METRICS),
        first_date=date(2020, 1, 2),
        last_date=date(2025, 12, 31),
        rows=1500,
        data_sha256="d" * 64,
        code_version="1.2.3",
        report_path=report_path,
        is_active=True,
    )


def job_record(*, status: str = "completed", version_id: str | None = "AAPL-20260105-abc"):
    return JobRecord(
        job_id="job1",
        ticker="AAPL",
        status=status,
        progress=100.0,
        current_epoch=2,
        total_epochs=2,
        train_loss=0.5,
        val_loss=None,
        losses=[
            {"epoch": 1, "train_loss": 0.75, "val_loss": 0.25},
            {"epoch": 2, "train_loss": 0.5, "val_loss": None},  # type: ignore[dict-item]
        ],
        error=None,
        params={"epochs": 2},
        created_at=CREATED,
        started_at=datetime(2026, 1, 5, 12, 1),
        finished_at=None,
        version_id=version_id,
        owner_host="host",
        owner_pid=42,
    )


FORECAST = Forecast(
    ticker="AAPL",
    version_id="AAPL-20260105-abc",
    last_date=date(2025, 12, 31),
    last_close=101.5,
    predictions=[
        ForecastPoint(date(2026, 1, 2), 102.25, 100.0, 104.5, {"0.05": 100.0, "0.95": 104.5}),
        ForecastPoint(date(2026, 1, 5), 103.0),
    ],
    interval_level=0.9,
    gate=GATE,
    warnings=["stale prices"],
    combined_with=["har_range", "gjr_skewt"],
)
CACHE_STATUS = CacheStatus("AAPL", 0, None, None, None, False)
SYNC_RESULT = SyncResult(
    ticker="AAPL",
    rows=600,
    first_date=date(2024, 1, 1),
    last_date=date(2026, 1, 2),
    from_cache=False,
    dropped_rows=2,
    drop_reasons={"non-positive price": 2},
    downloaded_rows=10,
    incremental=True,
    stale=False,
    warning=None,
    updated_at=CREATED,
    source="csv",
)

MODEL_JSON = {
    "version_id": "AAPL-20260105-abc",
    "ticker": "AAPL",
    "created_at": "2026-01-05T12:00:00Z",
    "is_active": True,
    "params": {"epochs": 3, "seed": 7},
    "metrics": METRICS_JSON,
    "first_date": "2020-01-02",
    "last_date": "2025-12-31",
    "rows": 1500,
    "data_sha256": "d" * 64,
    "code_version": "1.2.3",
    "report_url": "/api/v1/reports/AAPL-20260105-abc",
}
JOB_JSON = {
    "job_id": "job1",
    "ticker": "AAPL",
    "status": "completed",
    "progress": 100.0,
    "current_epoch": 2,
    "total_epochs": 2,
    "train_loss": 0.5,
    "val_loss": None,
    "losses": [
        {"epoch": 1, "train_loss": 0.75, "val_loss": 0.25},
        {"epoch": 2, "train_loss": 0.5, "val_loss": None},
    ],
    "error": None,
    "params": {"epochs": 2},
    "created_at": "2026-01-05T12:00:00Z",
    "started_at": "2026-01-05T12:01:00",
    "finished_at": None,
    "version_id": "AAPL-20260105-abc",
    "report_url": "/api/v1/reports/AAPL-20260105-abc",
    "model_active": True,
    "gate": GATE_JSON,
}
FORECAST_JSON = {
    "ticker": "AAPL",
    "version_id": "AAPL-20260105-abc",
    "last_date": "2025-12-31",
    "last_close": 101.5,
    "predictions": [
        {
            "date": "2026-01-02",
            "close": 102.25,
            "lower": 100.0,
            "upper": 104.5,
            "quantiles": {"0.05": 100.0, "0.95": 104.5},
        },
        {"date": "2026-01-05", "close": 103.0, "lower": None, "upper": None, "quantiles": None},
    ],
    "interval_level": 0.9,
    "gate": GATE_JSON,
    "warnings": ["stale prices"],
    "combined_with": ["har_range", "gjr_skewt"],
}
CACHE_STATUS_JSON = {
    "ticker": "AAPL",
    "rows": 0,
    "first_date": None,
    "last_date": None,
    "updated_at": None,
    "fresh": False,
}
SYNC_JSON = {
    "ticker": "AAPL",
    "rows": 600,
    "first_date": "2024-01-01",
    "last_date": "2026-01-02",
    "from_cache": False,
    "dropped_rows": 2,
    "drop_reasons": {"non-positive price": 2},
    "downloaded_rows": 10,
    "incremental": True,
    "stale": False,
    "warning": None,
    "updated_at": "2026-01-05T12:00:00Z",
    "source": "csv",
}


def ordered(value: Any) -> Any:
    """``value`` with every object as a list of (key, value) pairs: key order counts too."""
    if isinstance(value, dict):
        return [(key, ordered(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [ordered(item) for item in value]
    return value


def assert_json(response: BaseModel, expected: dict[str, Any]) -> None:
    sent = json.loads(response.model_dump_json(), object_pairs_hook=dict)
    assert ordered(sent) == ordered(expected)


def test_model_response_json() -> None:
    assert_json(ModelResponse.from_record(model_record()), MODEL_JSON)


def test_model_without_a_report_has_no_report_url() -> None:
    expected = {**MODEL_JSON, "report_url": None}
    assert_json(ModelResponse.from_record(model_record(report_path=None)), expected)


def test_completed_job_response_json_carries_its_models_state_and_gate() -> None:
    assert_json(JobResponse.from_record(job_record(), model_record()), JOB_JSON)


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_unfinished_or_failed_job_has_no_report_url(status: str) -> None:
    """A job that did not complete links no report even if it knows a version (a model
    registered whose report failed), and without its model says nothing of it."""
    expected = {**JOB_JSON, "status": status, "report_url": None}
    expected |= {"model_active": None, "gate": None}
    assert_json(JobResponse.from_record(job_record(status=status)), expected)


def test_job_without_a_version_has_no_report_url() -> None:
    expected = {**JOB_JSON, "version_id": None, "report_url": None}
    expected |= {"model_active": None, "gate": None}
    assert_json(JobResponse.from_record(job_record(version_id=None)), expected)


def test_a_gate_that_is_not_an_object_is_left_out() -> None:
    model = model_record()
    metrics = TrainingMetrics.from_json({"gate": "passed"})  # an odd row still reads
    odd = ModelRecord(**{**model.__dict__, "metrics": metrics, "is_active": False})
    expected = {**JOB_JSON, "model_active": False, "gate": None}
    assert_json(JobResponse.from_record(job_record(), odd), expected)


def test_forecast_response_json() -> None:
    assert_json(ForecastResponse.model_validate(FORECAST), FORECAST_JSON)


def test_cache_status_response_json() -> None:
    assert_json(CacheStatusResponse.model_validate(CACHE_STATUS), CACHE_STATUS_JSON)


def test_sync_response_json() -> None:
    assert_json(SyncResponse.model_validate(SYNC_RESULT), SYNC_JSON)
