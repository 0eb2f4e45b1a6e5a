"""A batch task retried after its first attempt registered the model but died before the
runner completed the job: the retry reports that model and completes the job (found in the
200-ticker drill: a worker killed 1.3 s after CHTR's registration left its job failed while
its model served)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from stock_lstm.cluster import worker_settings
from stock_lstm.config import Settings
from stock_lstm.db import Database
from stock_lstm.models import jobs
from stock_lstm.models.artifacts import SavedArtifacts
from stock_lstm.models.registry import TrainingDataSummary, register_model
from stock_lstm.pipeline.batch import run_stages_task, training_job_id


def test_a_retry_completes_the_job_whose_model_the_dead_attempt_registered(
    settings: Settings,
) -> None:
    job_id = training_job_id("night1", "AAPL")
    db = Database(settings.database_url)
    jobs.create_job(db, "AAPL", {"epochs": 1}, job_id=job_id)
    jobs.mark_running(db, job_id)
    files = Path(settings.models_dir) / "AAPL_20261207_120000"
    register_model(  # what the dead attempt's notebook did in its last cell
        db,
        ticker="AAPL",
        artifacts=SavedArtifacts(
            "AAPL_20261207_120000", files / "m.pt", files / "s.json", "m" * 64, "s" * 64
        ),
        params={"epochs": 1},
        metrics={"mae": 1.0, "persistence": {"mae": 1.0}},
        data=TrainingDataSummary(date(2020, 1, 2), date(2021, 1, 4), 250, "0" * 64),
        code_version="test",
        job_id=job_id,
        complete_job=False,
    )
    jobs.mark_failed(db, job_id, "interrupted: its process is gone")  # as reconcile_jobs does

    row = run_stages_task(worker_settings(settings), "AAPL", ["train"], {}, "night1")

    assert row["status"] == "ok" and row["reused"] is True
    assert row["version_id"] == "AAPL_20261207_120000"
    job = jobs.get_job(db, job_id)
    assert job.status == jobs.COMPLETED and job.version_id == "AAPL_20261207_120000"
    db.dispose()
