"""The HTTP API in-process (TestClient), training with a fast in-process fake of the notebook.

Every bad input must be a 4xx whose ``detail`` says what to do, never a 500, and must write
nothing: no job row, no registry row, no cached prices, no files.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import (
    GatedTraining,
    dead_pid,
    fast_training,
    metric_value,
    row_counts,
    set_job_owner,
    wait_for_job,
    wait_until,
)
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from stock_lstm.api import create_app
from stock_lstm.api.app import MAX_BODY_BYTES
from stock_lstm.api.training_pool import TrainingTask
from stock_lstm.config import Settings
from stock_lstm.models import jobs
from stock_lstm.models.registry import get_active_model
from stock_lstm.pipeline.runner import PipelineError
from stock_lstm.workflows import AppContext, register_outcome, train_ticker

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx, run_training=fast_training)) as test_client:
        yield test_client


@pytest.fixture
def token_ctx(settings: Settings, clock: Any) -> Iterator[AppContext]:
    context = AppContext.create(settings.model_copy(update={"api_token": TOKEN}), clock=clock)
    yield context
    context.db.dispose()


@pytest.fixture
def token_client(token_ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=token_ctx, run_training=fast_training)) as test_client:
        yield test_client


def train(client: TestClient, ticker: str = "AAPL", **params: Any) -> dict[str, Any]:
    """Start a training, wait for it and return its final status (must have completed)."""
    response = client.post("/api/v1/training/start", json={"ticker": ticker, **params})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job_id"])
    assert job["status"] == "completed", job
    return job


def detail(response: Any) -> str:
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    return body["detail"]


# --- training -------------------------------------------------------------------------------


def test_training_round_trip_status_report_and_prediction(client: TestClient) -> None:
    started = client.post("/api/v1/training/start", json={"ticker": "aapl", "epochs": 3})
    assert started.status_code == 202
    body = started.json()
    assert body["status"] == "queued" and body["ticker"] == "AAPL"
    assert started.headers["location"] == body["status_url"]

    job = wait_for_job(client, body["job_id"])
    assert job["status"] == "completed", job
    assert job["progress"] == 100.0
    assert job["current_epoch"] == job["total_epochs"] == 3
    assert [loss["epoch"] for loss in job["losses"]] == [1, 2, 3]
    assert job["error"] is None and job["params"]["epochs"] == 3
    assert job["report_url"] == f"/api/v1/reports/{job['version_id']}"
    # The outcome: a ticker's first model is active, with the gate's verdict and reason.
    assert job["model_active"] is True
    assert job["gate"]["status"] in ("passed", "failed") and job["gate"]["reason"]

    report = client.get(job["report_url"])
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert "AAPL report" in report.text

    active = client.get("/api/v1/models/AAPL/active").json()
    assert active["version_id"] == job["version_id"] and active["is_active"] is True
    assert "persistence" in active["metrics"]  # every model is reported beside the baseline

    forecast = client.post("/api/v1/predict", json={"ticker": "AAPL", "days_ahead": 5}).json()
    assert forecast["version_id"] == job["version_id"]
    dates = [point["date"] for point in forecast["predictions"]]
    assert len(dates) == 5 and dates == sorted(dates) and dates[0] > forecast["last_date"]
    assert all(point["close"] > 0 for point in forecast["predictions"])
    assert forecast["interval_level"] == 0.9 and forecast["gate"]["status"] in (
        "passed",
        "failed",
    )
    for point in forecast["predictions"]:
        assert point["lower"] <= point["close"] <= point["upper"]

    listed = client.get("/api/v1/training/jobs", params={"ticker": "AAPL"}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [body["job_id"]]


def test_second_start_for_a_busy_ticker_is_409_naming_the_job(ctx: AppContext) -> None:
    gated = GatedTraining()
    app = create_app(context=ctx, run_training=gated)
    with TestClient(app) as client:
        try:
            first = client.post("/api/v1/training/start", json={"ticker": "AAPL"}).json()
            wait_until(gated.started.is_set, timeout=10, what="the first job to start")
            other = client.post("/api/v1/training/start", json={"ticker": "MSFT"})
            assert other.status_code == 202  # another ticker may queue behind it

            for ticker, busy in (("AAPL", first), ("msft", other.json())):
                again = client.post("/api/v1/training/start", json={"ticker": ticker})
                assert again.status_code == 409
                assert busy["job_id"] in detail(again)
                assert f"/api/v1/training/status/{busy['job_id']}" in detail(again)
            assert row_counts(ctx.db).jobs == 2
            queued = client.get("/api/v1/training/jobs", params={"status": "queued"}).json()
            assert [job["ticker"] for job in queued["jobs"]] == ["MSFT"]
        finally:
            gated.release()
        assert wait_for_job(client, first["job_id"])["status"] == "completed"
        assert wait_for_job(client, other.json()["job_id"])["status"] == "completed"
        # Finished jobs no longer block their ticker.
        assert client.post("/api/v1/training/start", json={"ticker": "AAPL"}).status_code == 202


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"ticker": "AAPL", "epochs": 5000}', "epochs"),
        ('{"ticker": "AAPL", "epochs": 0}', "epochs"),
        ('{"ticker": "AAPL", "dropout": 0.95}', "dropout"),
        ('{"ticker": "AAPL", "learning_rate": 0}', "learning_rate"),
        ('{"ticker": "AAPL", "epochs": true}', "epochs"),
        ('{"ticker": "AAPL", "epochs": "5"}', "epochs"),
        ('{"ticker": "AAPL", "epochs": 2.5}', "epochs"),
        ('{"ticker": "AAPL", "dropout": NaN}', "dropout"),
        ('{"ticker": "AAPL", "epoch": 5}', "unknown field 'epoch'"),
        ('{"ticker": "AAPL", "job_id": "x"}', "unknown field 'job_id'"),
        ('{"ticker": "../etc/passwd"}', "malformed"),
        ('{"ticker": ""}', "empty"),
        ('{"ticker": 42}', "ticker"),
        ('{"epochs": 5}', "'ticker' is required"),
        ('{"ticker": "AAPL", "start": "2020-13-01"}', "start"),
        ('{"ticker": "AAPL", "start": "2020-02-01", "end": "2020-01-01"}', "swap them"),
        ('{"ticker": "AAPL",', "not valid JSON"),
        ("[]", "valid dictionary"),
    ],
)
def test_bad_training_requests_are_422_and_create_no_job(
    client: TestClient, ctx: AppContext, body: str, expected: str
) -> None:
    response = client.post(
        "/api/v1/training/start", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert expected in detail(response)
    assert row_counts(ctx.db).jobs == 0


def test_unknown_job_is_404_and_job_listing_validates_its_filters(client: TestClient) -> None:
    missing = client.get("/api/v1/training/status/nope")
    assert missing.status_code == 404 and "GET /api/v1/training/jobs" in detail(missing)
    assert client.get("/api/v1/training/status/" + "x" * 65).status_code == 422
    for query in ({"limit": 0}, {"limit": 1001}, {"status": "done"}, {"ticker": "A B"}):
        response = client.get("/api/v1/training/jobs", params=query)
        assert response.status_code == 422, query
        assert detail(response)
    listed = client.get("/api/v1/training/jobs", params={"limit": 1000}).json()
    assert listed == {"jobs": [], "total": 0, "next_cursor": None}


def test_failing_training_marks_job_failed_and_keeps_active_model(
    client: TestClient, ctx: AppContext
) -> None:
    good = train(client, "AAPL")
    # 600 rows cannot feed 1000-day sequences: train_ticker raises NotEnoughDataError.
    started = client.post(
        "/api/v1/training/start", json={"ticker": "AAPL", "sequence_length": 1000}
    )
    failed = wait_for_job(client, started.json()["job_id"])
    assert failed["status"] == "failed" and failed["version_id"] is None
    assert failed["error"] and "1000" in failed["error"]
    assert failed["report_url"] is None
    assert get_active_model(ctx.db, "AAPL").version_id == good["version_id"]
    assert row_counts(ctx.db).models == 1
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "stock_lstm_training_jobs_total", status="failed") == 1
    assert metric_value(metrics, "stock_lstm_training_jobs_total", status="completed") == 1


@pytest.mark.parametrize(
    ("runner_outcome", "expected_error"),
    [
        (PipelineError("stage train failed: KernelDied: boom (report: x.html)"), "KernelDied"),
        (RuntimeError("unexpected"), "unexpected"),
        (None, "without registering a model"),
    ],
)
def test_runner_failures_mark_the_job_failed_with_the_reason(
    ctx: AppContext, runner_outcome: Exception | None, expected_error: str
) -> None:
    def broken_runner(context: AppContext, task: TrainingTask) -> None:
        if runner_outcome is not None:
            raise runner_outcome

    with TestClient(create_app(context=ctx, run_training=broken_runner)) as client:
        started = client.post("/api/v1/training/start", json={"ticker": "AAPL"}).json()
        job = wait_for_job(client, started["job_id"])
    assert job["status"] == "failed" and expected_error in job["error"]
    assert row_counts(ctx.db).models == 0


def test_startup_fails_jobs_whose_process_is_gone_and_keeps_live_ones(ctx: AppContext) -> None:
    host, gone = socket.gethostname(), dead_pid()
    queued = jobs.create_job(ctx.db, "AAPL", {"epochs": 3})
    running = jobs.create_job(ctx.db, "MSFT", {"epochs": 3})
    jobs.mark_running(ctx.db, running.job_id)
    legacy = jobs.create_job(ctx.db, "TEST", {"epochs": 3})
    alive = jobs.create_job(ctx.db, "IBM", {"epochs": 3})
    jobs.mark_running(ctx.db, alive.job_id)  # owned by this (live) test process
    elsewhere = jobs.create_job(ctx.db, "KO", {"epochs": 3})
    for job_id in (queued.job_id, running.job_id):
        set_job_owner(ctx.db, job_id, host, gone)
    set_job_owner(ctx.db, legacy.job_id, None, None)  # written before owners were recorded
    set_job_owner(ctx.db, elsewhere.job_id, "another-host", gone)
    with TestClient(create_app(context=ctx, run_training=fast_training)) as client:

        def status(job_id: str) -> dict[str, Any]:
            return client.get(f"/api/v1/training/status/{job_id}").json()

        for job_id in (queued.job_id, running.job_id):
            job = status(job_id)
            assert job["status"] == "failed"
            assert job["error"].startswith(f"interrupted: its process {gone} on {host} is gone")
        assert status(legacy.job_id)["status"] == "failed"
        assert "interrupted by restart" in status(legacy.job_id)["error"]
        assert status(alive.job_id)["status"] == "running"
        assert status(elsewhere.job_id)["status"] == "queued"
        # ...and the dead ones no longer block a new training of their tickers.
        assert client.post("/api/v1/training/start", json={"ticker": "AAPL"}).status_code == 202


def test_jobs_still_queued_at_shutdown_are_failed(ctx: AppContext) -> None:
    gated = GatedTraining()
    with TestClient(create_app(context=ctx, run_training=gated)) as client:
        client.post("/api/v1/training/start", json={"ticker": "AAPL"})
        wait_until(gated.started.is_set, timeout=10, what="the first job to start")
        waiting = client.post("/api/v1/training/start", json={"ticker": "MSFT"}).json()
        gated.release()
    job = jobs.get_job(ctx.db, waiting["job_id"])
    assert job.status == "failed" and "start it again" in (job.error or "")


# --- models ---------------------------------------------------------------------------------


def test_activation_is_seen_by_the_next_prediction(client: TestClient) -> None:
    first = train(client, "AAPL")
    second = train(client, "AAPL", seed=7)
    listed = client.get("/api/v1/models", params={"ticker": "AAPL"}).json()["models"]
    assert {m["version_id"]: m["is_active"] for m in listed} == {
        first["version_id"]: False,
        second["version_id"]: True,
    }
    predict = {"ticker": "AAPL", "days_ahead": 2}
    assert client.post("/api/v1/predict", json=predict).json()["version_id"] == second["version_id"]

    activated = client.post(f"/api/v1/models/{first['version_id']}/activate")
    assert activated.status_code == 200 and activated.json()["is_active"] is True
    assert client.post("/api/v1/predict", json=predict).json()["version_id"] == first["version_id"]
    assert client.get("/api/v1/models/AAPL/active").json()["version_id"] == first["version_id"]
    assert metric_value(client.get("/metrics").text, "stock_lstm_active_models") == 1


def test_the_listing_carries_the_next_days_scores_unless_asked_for_all(
    client: TestClient,
) -> None:
    version = train(client, "AAPL")["version_id"]
    full = client.get("/api/v1/models/AAPL/active").json()["metrics"]["horizons"]
    assert len(full) > 1  # the trained version was scored at several horizons
    short = client.get("/api/v1/models").json()["models"][0]
    assert short["version_id"] == version and short["metrics"]["horizons"] == full[:1]
    every = client.get("/api/v1/models", params={"horizons": "all"}).json()["models"][0]
    assert every["metrics"]["horizons"] == full
    assert client.get("/api/v1/models", params={"horizons": "some"}).status_code == 422


def test_model_errors_are_404_or_422_with_a_hint(client: TestClient) -> None:
    no_model = client.get("/api/v1/models/MSFT/active")
    assert no_model.status_code == 404 and "POST /api/v1/training/start" in detail(no_model)
    assert client.get("/api/v1/models/BAD$/active").status_code == 422
    assert client.get("/api/v1/models", params={"ticker": "A/B"}).status_code == 422
    assert client.get("/api/v1/models").json() == {"models": [], "total": 0, "next_cursor": None}
    unknown = client.post("/api/v1/models/AAPL_20200101_000000/activate")
    assert unknown.status_code == 404 and "GET /api/v1/models" in detail(unknown)


# --- predictions ----------------------------------------------------------------------------


def test_predict_without_an_active_model_is_404_with_a_training_hint(
    client: TestClient, ctx: AppContext
) -> None:
    response = client.post("/api/v1/predict", json={"ticker": "msft", "days_ahead": 5})
    assert response.status_code == 404
    assert "MSFT" in detail(response) and "POST /api/v1/training/start" in detail(response)
    assert row_counts(ctx.db).prices == 0  # nothing was downloaded for it


@pytest.mark.parametrize(
    "body",
    [
        {"ticker": "AAPL", "days_ahead": 0},
        {"ticker": "AAPL", "days_ahead": 31},
        {"ticker": "AAPL", "days_ahead": 1.5},
        {"ticker": "AAPL", "days_ahead": True},
        {"ticker": "AA PL", "days_ahead": 5},
        {"ticker": "AAPL", "days": 5},
        {"days_ahead": 5},
    ],
)
def test_bad_predict_requests_are_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/api/v1/predict", json=body)
    assert response.status_code == 422 and detail(response)


def test_batch_prediction_answers_each_ticker(client: TestClient) -> None:
    job = train(client, "AAPL")
    response = client.post(
        "/api/v1/predict/batch", json={"tickers": ["aapl", "MSFT", "a/b"], "days_ahead": 3}
    )
    assert response.status_code == 200
    ok, untrained, malformed = response.json()["results"]
    assert ok["ok"] is True and ok["ticker"] == "AAPL" and ok["error"] is None
    assert ok["forecast"]["version_id"] == job["version_id"]
    assert len(ok["forecast"]["predictions"]) == 3
    assert untrained["ok"] is False and untrained["error"]["status"] == 404
    assert "POST /api/v1/training/start" in untrained["error"]["detail"]
    assert malformed["ok"] is False and malformed["error"]["status"] == 422

    metrics = client.get("/metrics").text
    assert metric_value(metrics, "stock_lstm_predictions_total", ticker="AAPL", outcome="ok") == 1
    assert metric_value(metrics, "stock_lstm_predictions_total", outcome="not_found") == 1
    assert metric_value(metrics, "stock_lstm_prediction_duration_seconds_count") == 3
    # The one forecast read its prices through the cache rule: the training had filled it.
    assert metric_value(metrics, "stock_lstm_cache_hits_total") == 1
    assert metric_value(metrics, "stock_lstm_cache_misses_total") == 0


def test_metrics_ticker_labels_setting_bounds_the_prediction_series(
    settings: Settings, clock: Any
) -> None:
    """STOCK_LSTM_METRICS_TICKER_LABELS=0: a served ticker is counted, but not named."""
    ctx = AppContext.create(settings.model_copy(update={"metrics_ticker_labels": 0}), clock=clock)
    with TestClient(create_app(context=ctx, run_training=fast_training)) as client:
        train(client, "AAPL")
        assert client.post("/api/v1/predict", json={"ticker": "AAPL"}).status_code == 200
        metrics = client.get("/metrics").text
    ctx.db.dispose()
    other = metric_value(metrics, "stock_lstm_predictions_total", ticker="<other>", outcome="ok")
    assert other == 1
    assert 'ticker="AAPL"' not in metrics


@pytest.mark.parametrize(
    "body",
    [
        {"tickers": [], "days_ahead": 5},
        {"tickers": ["AAPL"] * 51, "days_ahead": 5},
        {"tickers": ["A" * 40], "days_ahead": 5},
        {"tickers": "AAPL", "days_ahead": 5},
        {"tickers": ["AAPL"], "days_ahead": 40},
    ],
)
def test_bad_batch_requests_are_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/api/v1/predict/batch", json=body)
    assert response.status_code == 422 and detail(response)


# --- cache ----------------------------------------------------------------------------------


def test_cache_status_sync_hit_miss_and_delete(client: TestClient, ctx: AppContext) -> None:
    empty = client.get("/api/v1/cache/AAPL").json()
    assert empty["rows"] == 0 and empty["fresh"] is False and empty["last_date"] is None

    first = client.post("/api/v1/cache/aapl/sync").json()
    assert first["ticker"] == "AAPL" and first["rows"] == 600 and first["from_cache"] is False
    assert client.post("/api/v1/cache/AAPL/sync").json()["from_cache"] is True
    assert client.post("/api/v1/cache/AAPL/sync", params={"force": True}).json()["from_cache"] is (
        False
    )

    status = client.get("/api/v1/cache/AAPL").json()
    assert status["rows"] == 600 and status["fresh"] is True
    assert status["first_date"] < status["last_date"]

    metrics = client.get("/metrics").text
    assert metric_value(metrics, "stock_lstm_cache_hits_total") == 1
    assert metric_value(metrics, "stock_lstm_cache_misses_total") == 2

    deleted = client.delete("/api/v1/cache/AAPL")
    assert deleted.json() == {"ticker": "AAPL", "deleted_rows": 600}
    assert row_counts(ctx.db).prices == 0
    assert client.get("/api/v1/cache/AAPL").json()["rows"] == 0


def test_cache_errors_are_4xx_and_write_nothing(client: TestClient, ctx: AppContext) -> None:
    unknown = client.post("/api/v1/cache/ZZZZ/sync")
    assert unknown.status_code == 404 and "ZZZZ" in detail(unknown)
    for method, path in (
        ("GET", "/api/v1/cache/A$B"),
        ("POST", "/api/v1/cache/..%2F..%2Fetc/sync"),
        ("DELETE", "/api/v1/cache/A$B"),
        ("POST", "/api/v1/cache/AAPL/sync?force=maybe"),
    ):
        response = client.request(method, path)
        assert 400 <= response.status_code < 500, (method, path, response.text)
    assert row_counts(ctx.db).prices == 0


# --- reports --------------------------------------------------------------------------------


def test_report_errors_are_404_with_the_reason(client: TestClient, ctx: AppContext) -> None:
    unknown = client.get("/api/v1/reports/AAPL_20200101_000000")
    assert unknown.status_code == 404 and "GET /api/v1/models" in detail(unknown)

    # A model registered outside the runner (CLI `stock-lstm train`) has no report.
    from stock_lstm.models.training import TrainParams

    params = TrainParams(epochs=1, sequence_length=10, hidden_size=4, num_layers=1, dropout=0.0)
    record = register_outcome(ctx, train_ticker(ctx, "TEST", params))
    no_report = client.get(f"/api/v1/reports/{record.version_id}")
    assert no_report.status_code == 404 and "no report" in detail(no_report)

    job = train(client, "MSFT")
    Path(ctx.settings.reports_dir, "MSFT", f"{job['job_id']}.html").unlink()
    gone = client.get(job["report_url"])
    assert gone.status_code == 404 and "not on disk" in detail(gone)


# --- access, limits, health, metrics --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/training/start", {"ticker": "AAPL"}),
        ("POST", "/api/v1/models/AAPL_20200101_000000/activate", None),
        ("POST", "/api/v1/cache/AAPL/sync", None),
        ("DELETE", "/api/v1/cache/AAPL", None),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_state_changing_endpoints_need_the_token(
    token_client: TestClient,
    token_ctx: AppContext,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    token_client.post("/api/v1/cache/MSFT/sync", headers=AUTH)  # something a DELETE could remove
    before = row_counts(token_ctx.db)
    response = token_client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "STOCK_LSTM_API_TOKEN" in detail(response)
    assert row_counts(token_ctx.db) == before


def test_token_is_checked_before_the_body_and_reads_stay_open(
    token_client: TestClient, token_ctx: AppContext
) -> None:
    bad_body = token_client.post("/api/v1/training/start", json={"ticker": "A$"})
    assert bad_body.status_code == 401
    with_token = token_client.post("/api/v1/training/start", json={"ticker": "A$"}, headers=AUTH)
    assert with_token.status_code == 422

    synced = token_client.post("/api/v1/cache/AAPL/sync", headers=AUTH)
    assert synced.status_code == 200 and synced.json()["rows"] == 600
    for path in ("/health", "/metrics", "/api/v1/models", "/api/v1/cache/AAPL", "/docs"):
        assert token_client.get(path).status_code == 200, path
    untrained = token_client.post("/api/v1/predict", json={"ticker": "AAPL", "days_ahead": 1})
    assert untrained.status_code == 404  # open, and answered on its merits
    assert token_client.delete("/api/v1/cache/AAPL", headers=AUTH).json()["deleted_rows"] == 600
    assert row_counts(token_ctx.db).jobs == 0


def test_oversized_bodies_are_413_and_write_nothing(client: TestClient, ctx: AppContext) -> None:
    padding = "x" * (MAX_BODY_BYTES + 1)
    declared = client.post("/api/v1/training/start", json={"ticker": "AAPL", "pad": padding})
    assert declared.status_code == 413 and "bytes" in detail(declared)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed bytes are counted
        yield b'{"ticker": "AAPL", "pad": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"y" * 1024
        yield b'"}'

    streamed = client.post(
        "/api/v1/training/start", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert row_counts(ctx.db).jobs == 0
    metrics = client.get("/metrics").text
    assert (
        metric_value(
            metrics,
            "stock_lstm_http_requests_total",
            method="POST",
            route="/api/v1/training/start",
            status="413",
        )
        == 2
    )


def test_health_is_ok_then_503_when_a_dependency_breaks(
    client: TestClient, ctx: AppContext, tmp_path: Path
) -> None:
    healthy = client.get("/health")
    assert healthy.status_code == 200
    assert healthy.json() | {"version": "-"} == {
        "status": "ok",
        "version": "-",
        "database": "ok",
        "models_dir": "ok",
    }

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    ctx.settings.models_dir = blocker / "models"
    broken_models = client.get("/health")
    assert broken_models.status_code == 503
    assert broken_models.json()["models_dir"].startswith("error: models folder")

    engine, ctx.db.engine = ctx.db.engine, create_engine(f"sqlite:///{tmp_path}/no/dir/db.sqlite")
    try:
        broken_db = client.get("/health").json()
    finally:
        ctx.db.engine.dispose()
        ctx.db.engine = engine
    assert broken_db["status"] == "unavailable" and broken_db["database"].startswith("error")


def test_metrics_use_route_templates_never_raw_paths(client: TestClient) -> None:
    client.get("/api/v1/models/MSFT/active")
    client.get("/api/v1/models/TEST/active")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert "/api/v1/models/MSFT/active" not in text and "/no/such/path" not in text
    route = "/api/v1/models/{ticker}/active"
    labels = {"method": "GET", "route": route, "status": "404"}
    assert metric_value(text, "stock_lstm_http_requests_total", **labels) == 2
    assert metric_value(text, "stock_lstm_http_request_duration_seconds_count", **labels) == 2
    assert metric_value(text, "stock_lstm_http_requests_total", route="<unmatched>") == 1
    assert metric_value(text, "stock_lstm_training_jobs_running") == 0
    assert metric_value(text, "stock_lstm_active_models") == 0
    assert all(line.startswith(("stock_lstm_", "#")) for line in text.splitlines() if line.strip())


def test_each_app_has_its_own_metrics(ctx: AppContext) -> None:
    apps = [create_app(context=ctx, run_training=fast_training) for _ in range(3)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        first.get("/health")
        assert metric_value(first.get("/metrics").text, "stock_lstm_http_requests_total") == 1
        assert metric_value(second.get("/metrics").text, "stock_lstm_http_requests_total") is None


def test_unknown_routes_and_methods_are_json_4xx(client: TestClient) -> None:
    assert client.get("/api/v1/nope").status_code == 404
    wrong_method = client.get("/api/v1/training/start")
    assert wrong_method.status_code == 405 and detail(wrong_method)
    openapi = client.get("/openapi.json").json()
    assert "/api/v1/predict/batch" in openapi["paths"] and "/health" in openapi["paths"]


def test_the_startup_heap_is_frozen_out_of_the_collector(client: TestClient) -> None:
    """Full collections over torch's objects paused every request (see _freeze_startup_heap)."""
    import gc

    assert client.get("/health").status_code == 200
    assert gc.get_freeze_count() > 100_000


def test_docs_and_their_assets_are_served_without_the_network(client: TestClient) -> None:
    import re

    # No /redoc: ReDoc's bundled script fetches its logo from cdn.redoc.ly.
    assert client.get("/redoc").status_code == 404
    for page in ("/docs",):
        response = client.get(page)
        assert response.status_code == 200
        sources = re.findall(r"(?:src|href)=[\"']([^\"']+)[\"']", response.text)
        assets = re.findall(r"url: ?[\"']([^\"']+)[\"']", response.text)
        assert sources and not [s for s in sources if s.startswith(("http:", "https:", "//"))]
        for path in sources + assets:
            if path.startswith("/"):
                assert client.get(path).status_code == 200, path


def test_every_route_is_in_readme_and_every_route_readme_names_exists(client: TestClient) -> None:
    """README said `GET|POST(sync)|DELETE /api/v1/cache/{ticker}` and had no cancel route:
    docs drift caught by a test. Methods and paths of /openapi.json against README's
    ``METHOD /path`` mentions (``GET|DELETE /x`` names both)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    mentioned: set[tuple[str, str]] = set()
    for methods, path in re.findall(
        r"((?:GET|POST|PUT|PATCH|DELETE)(?:\|[A-Z]+)*) (/[^\s`?),]*)", readme
    ):
        for method in methods.split("|"):
            mentioned.add((method, path.rstrip(".")))
    routes = {
        (method.upper(), path)
        for path, item in client.get("/openapi.json").json()["paths"].items()
        for method in item
    }
    missing = sorted(f"{m} {p}" for m, p in routes if (m, p) not in mentioned)
    assert not missing, f"routes README does not name: {missing}"

    def matches(path: str) -> bool:
        return any(
            re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) for _m, template in routes
        )

    unknown = sorted(f"{m} {p}" for m, p in mentioned if p.startswith("/api/") and not matches(p))
    assert not unknown, f"README names routes the API does not have: {unknown}"
