"""A training job's life: completed only with its report written, cancellable while queued or
running, bounded in time and in what a request may ask for (issue 14, items 4 and 7)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import TINY_PARAMS, GatedTraining, fast_training, wait_until
from fastapi.testclient import TestClient
from test_pipeline import write_notebook

from stock_lstm.api import create_app
from stock_lstm.api import training_pool as training_pool_module
from stock_lstm.api.training_pool import TrainingTask, run_notebook_training
from stock_lstm.config import Settings
from stock_lstm.errors import ConflictError, JobCancelledError
from stock_lstm.models import jobs
from stock_lstm.models.registry import list_models
from stock_lstm.models.training import TrainParams
from stock_lstm.pipeline import runner
from stock_lstm.pipeline.runner import PipelineError, run_pipeline
from stock_lstm.workflows import AppContext, register_outcome, train_ticker

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def train_notebook(tmp_path: Path) -> Path:
    """A train notebook doing what the real one does last: train, then register for the job."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "03_train.ipynb",
        'ticker = "AAPL"\njob_id = None\nreport_path = None\nepochs = 2\nsleep = 0',
        "import time\n"
        "from stock_lstm.models.training import TrainParams\n"
        "from stock_lstm.workflows import AppContext, register_outcome, train_ticker\n"
        "time.sleep(sleep)\n"
        "ctx = AppContext.create()\n"
        f"params = TrainParams.from_dict({{**{TINY_PARAMS!r}, 'epochs': epochs}})\n"
        "outcome = train_ticker(ctx, ticker, params, job_id=job_id)\n"
        "register_outcome(ctx, outcome, report_path=report_path, job_id=job_id, force=True)\n",
    )
    return folder


def test_a_job_is_completed_only_once_its_report_exists(
    settings: Settings, ctx: AppContext, train_notebook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client polling the status and then fetching the report never gets a 404: while the
    report is being rendered the model is registered but the job is still running."""
    seen: list[jobs.JobRecord] = []
    real_render = runner.render_html

    def render_and_look(notebook: Path) -> Path:
        seen.append(jobs.get_job(ctx.db, "J1"))
        return real_render(notebook)

    monkeypatch.setattr(runner, "render_html", render_and_look)
    result = run_pipeline(
        ["train"], "AAPL", settings, {"job_id": "J1"}, notebooks_dir=train_notebook, progress=False
    )
    (at_render,) = seen
    assert at_render.version_id == result.version_id is not None
    assert at_render.status == "running"
    done = jobs.get_job(ctx.db, "J1")
    assert done.status == "completed" and done.version_id == result.version_id, done
    assert (result.run_dir / "03_train.html").is_file()
    # The runner, which outlives the kernel, owned the job while the kernel trained.
    assert done.owner_pid == at_render.owner_pid == result.owner_pid


def test_a_cell_past_the_time_limit_fails_the_job_saying_so(
    settings: Settings, ctx: AppContext, train_notebook: Path
) -> None:
    with pytest.raises(PipelineError, match="past the limit"):
        run_pipeline(
            ["train"],
            "AAPL",
            settings,
            {"job_id": "J2", "sleep": 60},
            notebooks_dir=train_notebook,
            progress=False,
            execution_timeout=3,
        )
    job = jobs.get_job(ctx.db, "J2")
    assert job.status == "failed" and "STOCK_LSTM_JOB_TIMEOUT_HOURS" in (job.error or "")
    assert list_models(ctx.db) == []


def test_an_api_job_runs_under_the_configured_time_limit(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(runner, "run_pipeline", lambda *a, **k: calls.append(k))
    ctx.settings = ctx.settings.model_copy(update={"job_timeout_hours": 0.5})
    run_notebook_training(ctx, TrainingTask("J", "AAPL", {}))
    assert calls[0]["execution_timeout"] == 1800.0
    assert training_pool_module.job_timeout_seconds(ctx) == 1800.0


def test_a_running_training_stops_at_its_next_epoch_when_cancelled(ctx: AppContext) -> None:
    params = TrainParams.from_dict({**TINY_PARAMS, "epochs": 1000})
    errors: list[BaseException] = []

    def train() -> None:
        try:
            outcome = train_ticker(ctx, "AAPL", params, job_id="J3")
            register_outcome(ctx, outcome, job_id="J3")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=train)
    thread.start()
    wait_until(
        lambda: (
            jobs.get_job(ctx.db, "J3").current_epoch >= 1
            if jobs.list_jobs(ctx.db, limit=1)
            else None
        ),
        timeout=60,
        what="the first epoch",
    )
    cancelled = jobs.cancel_job(ctx.db, "J3", clock=ctx.clock)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert cancelled.status == "cancelled"
    assert len(errors) == 1 and isinstance(errors[0], JobCancelledError)
    job = jobs.get_job(ctx.db, "J3")
    assert job.status == "cancelled" and job.current_epoch < 1000 and job.version_id is None
    assert list_models(ctx.db) == []
    with pytest.raises(ConflictError, match="already finished"):
        jobs.cancel_job(ctx.db, "J3")


def test_a_model_finished_after_the_cancel_is_not_registered(ctx: AppContext) -> None:
    outcome = train_ticker(ctx, "AAPL", TrainParams.from_dict(TINY_PARAMS), job_id="J4")
    jobs.cancel_job(ctx.db, "J4")  # arrives after the last epoch, before registration
    with pytest.raises(JobCancelledError):
        register_outcome(ctx, outcome, job_id="J4")
    assert list_models(ctx.db) == []
    assert not list(Path(ctx.settings.models_dir).glob("*.pt"))  # its files are removed
    assert jobs.get_job(ctx.db, "J4").status == "cancelled"


@pytest.fixture
def token_ctx(settings: Settings, clock: Any) -> Iterator[AppContext]:
    context = AppContext.create(settings.model_copy(update={"api_token": TOKEN}), clock=clock)
    yield context
    context.db.dispose()


def test_cancel_over_the_api_stops_a_queued_job_and_needs_the_token(
    token_ctx: AppContext,
) -> None:
    gated = GatedTraining()
    ran: list[str] = []

    def recording(ctx: AppContext, task: TrainingTask) -> None:
        ran.append(task.ticker)
        gated(ctx, task)

    with TestClient(create_app(context=token_ctx, run_training=recording)) as client:
        try:
            first = client.post("/api/v1/training/start", json={"ticker": "AAPL"}, headers=AUTH)
            wait_until(gated.started.is_set, timeout=10, what="the first job to start")
            queued = client.post("/api/v1/training/start", json={"ticker": "MSFT"}, headers=AUTH)
            job_id = queued.json()["job_id"]

            assert client.post(f"/api/v1/training/{job_id}/cancel").status_code == 401
            response = client.post(f"/api/v1/training/{job_id}/cancel", headers=AUTH)
            assert response.status_code == 200 and response.json()["status"] == "cancelled"
            # A cancelled job no longer blocks its ticker.
            again = client.post("/api/v1/training/start", json={"ticker": "MSFT"}, headers=AUTH)
            assert again.status_code == 202
        finally:
            gated.release()
        first_id = first.json()["job_id"]
        for finished_id in (first_id, again.json()["job_id"]):
            wait_until(
                lambda job=finished_id: (
                    client.get(f"/api/v1/training/status/{job}").json()["status"] == "completed"
                ),
                timeout=30,
                what="the other jobs to complete",
            )
        status = client.get(f"/api/v1/training/status/{job_id}").json()
        assert status["status"] == "cancelled" and status["report_url"] is None
        finished = client.post(f"/api/v1/training/{first_id}/cancel", headers=AUTH)
        assert finished.status_code == 409 and "already finished" in finished.json()["detail"]
        missing = client.post("/api/v1/training/nope/cancel", headers=AUTH)
        assert missing.status_code == 404
        listed = client.get("/api/v1/training/jobs", params={"status": "cancelled"}).json()
        assert [job["job_id"] for job in listed["jobs"]] == [job_id]
    assert ran == ["AAPL", "MSFT"]  # the cancelled job never reached a worker's training


@pytest.mark.parametrize(
    "params",
    [
        {"epochs": 1000, "patience": 0, "hidden_size": 128},
        {"num_layers": 8, "hidden_size": 1024, "sequence_length": 1000},
    ],
)
def test_a_training_request_beyond_one_jobs_cost_is_refused_naming_the_bound(
    ctx: AppContext, params: dict[str, int]
) -> None:
    with TestClient(create_app(context=ctx, run_training=fast_training)) as client:
        response = client.post("/api/v1/training/start", json={"ticker": "AAPL", **params})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "at most 32x" in detail and "STOCK_LSTM_MAX_JOB_COST" in detail
    assert jobs.list_jobs(ctx.db) == []


def test_the_default_training_costs_one_unit_and_the_bound_is_a_setting() -> None:
    assert TrainParams().relative_cost == 1.0
    assert TrainParams(epochs=200, hidden_size=128).relative_cost == pytest.approx(8.0)
