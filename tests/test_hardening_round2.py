"""Hardening, second round (issue 23): each reproduction of the issue, as a test that failed
on the main of before. Settings and the database first: one line and exit 2, never a
traceback; the API answers 503 with Retry-After while the database is unreachable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stock_lstm.api import create_app
from stock_lstm.api import serve as serve_module
from stock_lstm.cli import main
from stock_lstm.config import Settings
from stock_lstm.db.session import make_engine, translate_connection_errors
from stock_lstm.errors import DatabaseUnavailableError, StockLSTMError
from stock_lstm.workflows import AppContext

#: Nothing listens on port 1 of the loopback address: a refused connection, at once.
UNREACHABLE = "postgresql+psycopg://user:secret-pw@127.0.0.1:1/nothing"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (UNREACHABLE, "cannot be reached"),
        ("mysql://user:secret-pw@127.0.0.1:1/nothing", "driver that is not installed"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_with_the_password_masked(
    cli_env: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    expected: str,
) -> None:
    from stock_lstm.config import get_settings

    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        code, err = _run(capsys, "models")
    finally:
        get_settings.cache_clear()
    assert code == 2 and expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "secret-pw" not in err and "***" in err


def test_a_lost_database_server_is_a_503_with_retry_after(ctx: AppContext) -> None:
    """Once the app runs, a database server that stops answering is a 503 with Retry-After
    on every route that needs it, never a 500: the app's engine is swapped for one whose
    server refuses connections, as a stopped PostgreSQL does."""
    from sqlalchemy.orm import sessionmaker

    engine = make_engine(UNREACHABLE)
    translate_connection_errors(engine, UNREACHABLE)
    with pytest.raises(DatabaseUnavailableError, match=r"\*\*\*@127\.0\.0\.1:1"):
        engine.connect()
    with TestClient(create_app(context=ctx)) as client:
        working = ctx.db.engine
        ctx.db.engine, ctx.db._sessions = engine, sessionmaker(engine)  # type: ignore[attr-defined]
        try:
            for method, path, body in (
                ("GET", "/api/v1/models", None),
                ("GET", "/api/v1/training/jobs", None),
                ("GET", "/api/v1/cache/KO", None),
                ("POST", "/api/v1/predict", {"ticker": "KO", "days_ahead": 1}),
            ):
                response = client.request(method, path, json=body)
                assert response.status_code == 503, (path, response.text)
                assert response.headers["Retry-After"] == "5"
                assert "cannot be reached" in response.json()["detail"]
                assert "secret-pw" not in response.text
        finally:
            ctx.db.engine, ctx.db._sessions = working, sessionmaker(working)  # type: ignore[attr-defined]
        assert client.get("/api/v1/models").status_code == 200  # back by itself
    engine.dispose()


def test_a_non_utf8_env_file_is_one_line(
    cli_env: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stock_lstm.config import get_settings

    (tmp_path / ".env").write_bytes(b"STOCK_LSTM_CACHE_EXPIRY_HOURS=5\nNOTE=caf\xe9\n")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        code, err = _run(capsys, "models")
    finally:
        os.chdir(cwd)
        get_settings.cache_clear()
    assert code == 2 and "is not UTF-8 text (byte 0xe9" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("1", "1 characters"),
        ("a" * 40, "only 1 different"),
        ("abcabcabcabcabcabcabcabcabcabcabc", "3"),
    ],
)
def test_a_weak_token_is_refused_beyond_loopback(
    settings: Settings, token: str, reason: str
) -> None:
    weak = settings.model_copy(update={"api_token": token})
    with pytest.raises(StockLSTMError, match=reason):
        serve_module.check_exposure("0.0.0.0", insecure=False, settings=weak)
    serve_module.check_exposure("127.0.0.1", insecure=False, settings=weak)  # a local choice


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [("127.0.0.1 ", 0, "not an address"), ("nope.invalid", 0, "not an address")],
)
def test_a_host_that_cannot_be_listened_on_is_one_line(host: str, port: int, expected: str) -> None:
    with pytest.raises(StockLSTMError, match=expected):
        serve_module.check_bindable(host, port)


def test_a_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StockLSTMError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_module.check_bindable("127.0.0.1", port)


def test_wrong_tokens_are_slowed_per_client(ctx: AppContext) -> None:
    """Ten wrong tokens in a minute, then 429s with Retry-After without checking the token;
    the limit is the guesser's own (another client is not slowed) and ends with its window."""
    from stock_lstm.api.guards import AuthFailureLimiter

    ctx.settings = ctx.settings.model_copy(update={"api_token": "right-token"})
    body = {"ticker": "AAPL", "epochs": 1}
    with TestClient(create_app(context=ctx)) as client:
        wrong = {"Authorization": "Bearer wrong"}
        codes = [
            client.post("/api/v1/cache/AAPL/sync", json=body, headers=wrong).status_code
            for _ in range(12)
        ]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
        refused = client.post("/api/v1/cache/AAPL/sync", headers={"Authorization": "Bearer x"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    now = [0.0]
    limiter = AuthFailureLimiter(max_failures=2, window_seconds=60, clock=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 60 and limiter.retry_after("b") is None
    now[0] = 59.5
    assert limiter.retry_after("a") == 1
    now[0] = 60.0
    assert limiter.retry_after("a") is None  # the first failure left the window


def test_an_anonymous_client_reads_no_absolute_path(ctx: AppContext, tmp_path: Path) -> None:
    """With a token, a client without it reads the models' parameters, the batch's errors and
    the reports with the server's folders replaced; the token holder reads them as they are."""
    from api_helpers import TINY_PARAMS

    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import register_outcome, train_ticker

    outcome = train_ticker(ctx, "AAPL", TrainParams.from_dict(TINY_PARAMS))
    report = Path(ctx.settings.reports_dir) / "AAPL" / "run" / "03_train.html"
    report.parent.mkdir(parents=True)
    report.write_text(
        f"<html><body>models in {Path(ctx.settings.models_dir).resolve()}/x.pt, source "
        f"{ctx.settings.source}, report {report}; see POST /api/v1/training/start</body></html>"
    )
    record = register_outcome(ctx, outcome, force=True, report_path=str(report))
    Path(record.model_path).unlink()  # a damaged version: its error names the models folder
    ctx.settings = ctx.settings.model_copy(update={"api_token": "secret"})
    folders = [str(Path(ctx.settings.models_dir).resolve()), str(Path(ctx.settings.reports_dir))]
    folders.append(ctx.settings.source.removeprefix("csv:"))
    holder = {"Authorization": "Bearer secret"}
    batch = {"tickers": ["AAPL"], "days_ahead": 2}
    with TestClient(create_app(context=ctx)) as client:
        anonymous = [
            client.get("/api/v1/models").text,
            client.get("/api/v1/models/AAPL/active").text,
            client.post("/api/v1/predict/batch", json=batch).text,
            client.get(f"/api/v1/reports/{record.version_id}").text,
        ]
        full = client.get("/api/v1/models", headers=holder).text
        full_report = client.get(f"/api/v1/reports/{record.version_id}", headers=holder).text
    for text in anonymous:
        assert not [folder for folder in folders if folder in text], text[:300]
    assert '"source":"csv:[folder]"' in anonymous[0]
    assert "[models]/x.pt" in anonymous[3] and "POST /api/v1/training/start" in anonymous[3]
    assert ctx.settings.source in full and str(report) in full_report


def test_a_job_cost_counts_chunk_length_and_batch_size(ctx: AppContext) -> None:
    """{"epochs":1000,"patience":0,"chunk_length":1,"batch_size":1} was a 202 whose first
    epoch had not ended after 34 s; it costs 300x the default now, a 422."""
    from stock_lstm.models import jobs
    from stock_lstm.models.training import TrainParams

    assert TrainParams(chunk_length=1, batch_size=1).relative_cost == pytest.approx(30.25, 0.01)
    assert TrainParams(batch_size=1024).relative_cost == 1.0  # wider steps: no more work
    body = {"ticker": "IBM", "epochs": 1000, "patience": 0, "chunk_length": 1, "batch_size": 1}
    with TestClient(create_app(context=ctx)) as client:
        response = client.post("/api/v1/training/start", json=body)
    assert response.status_code == 422 and "chunk_length" in response.json()["detail"]
    assert jobs.list_jobs(ctx.db) == []


def test_the_queue_and_each_client_are_bounded(ctx: AppContext) -> None:
    """40 starts for distinct tickers were all 202; now the queue holds
    STOCK_LSTM_MAX_QUEUED_JOBS (503 with Retry-After beyond) and one client at most
    STOCK_LSTM_MAX_JOBS_PER_CLIENT unfinished jobs (429)."""
    from api_helpers import GatedTraining

    gated = GatedTraining()
    ctx.settings = ctx.settings.model_copy(
        update={"max_queued_jobs": 2, "max_jobs_per_client": 100}
    )
    try:
        with TestClient(create_app(context=ctx, run_training=gated)) as client:
            first = client.post("/api/v1/training/start", json={"ticker": "AAPL"})
            assert first.status_code == 202 and gated.started.wait(10)  # the worker has it
            codes = [
                client.post("/api/v1/training/start", json={"ticker": t}).status_code
                for t in ("MSFT", "TEST", "KO", "IBM")
            ]
            # Two wait, the rest are refused.
            assert codes == [202, 202, 503, 503], codes
            full = client.post("/api/v1/training/start", json={"ticker": "XOM"})
            assert full.headers["Retry-After"] == "60"
            assert "STOCK_LSTM_MAX_QUEUED_JOBS" in full.json()["detail"]
            gated.release()
    finally:
        gated.release()
    ctx.settings = ctx.settings.model_copy(update={"max_queued_jobs": 50, "max_jobs_per_client": 2})
    gated = GatedTraining()
    try:
        with TestClient(create_app(context=ctx, run_training=gated)) as client:
            codes = [
                client.post("/api/v1/training/start", json={"ticker": t}).status_code
                for t in ("JPM", "HD", "PG")
            ]
            assert codes == [202, 202, 429], codes
            gated.release()
    finally:
        gated.release()


def test_a_cancel_is_before_registration_or_refused_never_both(ctx: AppContext) -> None:
    """A cancel 3-4.5 s after the last epoch answered 200 `cancelled` while the job's model
    was registered and active. At each boundary now: after the last epoch and before
    registration the cancel wins (nothing registered, no files left); once registered (the
    report being written) it is a 409 naming the version, and the job completes."""
    from api_helpers import TINY_PARAMS

    from stock_lstm.errors import ConflictError, JobCancelledError
    from stock_lstm.models import jobs
    from stock_lstm.models.registry import list_models
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import register_outcome, train_ticker

    params = TrainParams.from_dict(TINY_PARAMS)
    models = Path(ctx.settings.models_dir)
    jobs.create_job(ctx.db, "AAPL", params.to_dict(), job_id="before")
    outcome = train_ticker(ctx, "AAPL", params, job_id="before")  # every epoch done
    jobs.cancel_job(ctx.db, "before")
    with pytest.raises(JobCancelledError):
        register_outcome(ctx, outcome, report_path="r.html", job_id="before")
    assert list_models(ctx.db) == [] and not list(models.glob("*.pt"))
    assert jobs.get_job(ctx.db, "before").status == "cancelled"

    jobs.create_job(ctx.db, "AAPL", params.to_dict(), job_id="after")
    outcome = train_ticker(ctx, "AAPL", params, job_id="after")
    record = register_outcome(ctx, outcome, report_path="r.html", job_id="after", force=True)
    with pytest.raises(ConflictError, match=f"already registered model {record.version_id}"):
        jobs.cancel_job(ctx.db, "after")
    job = jobs.get_job(ctx.db, "after")
    assert job.status == "running" and job.version_id == record.version_id
    with TestClient(create_app(context=ctx)) as client:
        refused = client.post("/api/v1/training/after/cancel")
    assert refused.status_code == 409 and record.version_id in refused.json()["detail"]
