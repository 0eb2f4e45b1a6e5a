"""The server bounds what a client can hold, and unauthenticated reads do not reveal the
server's folders (issue 14, item 12).

Reproduced on main: uvicorn ran with no concurrency limit and no header timeout (a client
that opened connections and sent nothing held them for ever); a failed job's error (listing
the CSV folder and its files) and ``/health``'s database exception were readable by anyone.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import free_port, running_process, server_env, wait_for_http
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from stock_lstm.api import create_app
from stock_lstm.api import serve as serve_module
from stock_lstm.config import Settings
from stock_lstm.models import jobs
from stock_lstm.workflows import AppContext

TOKEN = "limits-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: A job error as the CSV source writes it: it names the server's folder and files.
SECRET_PATH = "/srv/secret-folder/prices"
PATH_ERROR = f"no CSV for ZZZ in {SECRET_PATH} (files there: AAPL.csv, MSFT.csv)"


def test_serve_runs_uvicorn_with_limits_from_the_settings(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    settings.api_concurrency_limit = 7
    settings.api_keep_alive_seconds = 3
    settings.api_header_timeout_seconds = 2.5
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    serve_module.serve("127.0.0.1", 8000, insecure=False, settings=settings)
    assert seen["limit_concurrency"] == 7 and seen["timeout_keep_alive"] == 3
    protocol = seen["http"]
    assert isinstance(protocol, type) and protocol.header_timeout == 2.5
    assert 0 < protocol.max_head_bytes <= 64 * 1024
    assert seen["h11_max_incomplete_event_size"] == protocol.max_head_bytes


def test_the_limits_have_safe_defaults() -> None:
    defaults = Settings()
    assert 1 <= defaults.api_concurrency_limit <= 1000
    assert 1 <= defaults.api_keep_alive_seconds <= 60
    assert 0 < defaults.api_header_timeout_seconds <= 60


@pytest.fixture
def live_server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """``stock-lstm serve`` on a free loopback port, with 1 s head and body timeouts and 5
    connections per client."""
    port = free_port()
    argv = [sys.executable, "-m", "stock_lstm.cli", "serve", "--port", str(port)]
    env = server_env(
        settings,
        STOCK_LSTM_API_HEADER_TIMEOUT_SECONDS="1",
        STOCK_LSTM_API_BODY_TIMEOUT_SECONDS="1",
        STOCK_LSTM_API_CONNECTIONS_PER_CLIENT="5",
    )
    log = tmp_path / "serve.log"
    with running_process(argv, log_path=log, cwd=tmp_path, env=env) as process:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base_url}/health", process=process, log=log, timeout=60)
        yield f"127.0.0.1:{port}"


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (None: still open after ``seconds``)."""
    began = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass  # a 400/408 answer before the close is fine
    except TimeoutError:
        return None
    except OSError:
        pass  # reset by the server: closed too
    return time.monotonic() - began


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"GET /hea"],
    ids=["silent", "headers-never-end", "request-line-unfinished"],
)
def test_a_request_head_that_never_completes_is_cut_off(live_server: str, sent: bytes) -> None:
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(sent)
        closed_after = _closed_within(sock, 6.0)
    assert closed_after is not None, "the server kept a connection that never sent a request"
    assert closed_after < 5.0


def test_a_slowloris_trickle_does_not_extend_the_deadline(live_server: str) -> None:
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        began = time.monotonic()
        try:
            for _ in range(12):  # a header byte every 0.4 s
                sock.sendall(b"X")
                time.sleep(0.4)
        except OSError:
            pass  # closed under us: what we want
        closed_after = _closed_within(sock, 3.0)
    assert closed_after is not None and time.monotonic() - began < 6.0


def test_an_oversized_request_head_is_refused(live_server: str) -> None:
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for _ in range(100):
                sock.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        except OSError:
            pass
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_a_normal_request_still_works(live_server: str) -> None:
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: " + live_server.encode() + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_slow_bodies_are_cut_off_and_one_client_cannot_take_every_slot(live_server: str) -> None:
    """99 connections declaring a 60,000-byte body and sending a byte every 5 s made /health
    a 503 for as long as they went on (issue 23, item 3). Now one client holds at most 5
    connections (the rest are closed at once), each body must arrive within 1 s of its
    headers, and another client is answered meanwhile."""
    host, port = live_server.split(":")
    head = (
        b"POST /api/v1/predict HTTP/1.1\r\nHost: " + live_server.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"
    )
    socks = [socket.create_connection((host, int(port)), timeout=5) for _ in range(10)]
    try:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(head)
        began = time.monotonic()
        other = socket.socket()
        other.bind(("127.0.0.2", 0))  # another client address on the loopback network
        other.settimeout(5)
        other.connect((host, int(port)))
        with other:
            other.sendall(b"GET /health HTTP/1.1\r\nHost: " + live_server.encode() + b"\r\n\r\n")
            assert other.recv(4096).startswith(b"HTTP/1.1 200")
        closed = [_closed_within(sock, 4.0) for sock in socks]
        assert all(after is not None for after in closed), closed
        assert time.monotonic() - began < 4.0
    finally:
        for sock in socks:
            sock.close()


# --- what unauthenticated clients read ------------------------------------------------------


def _failed_job(ctx: AppContext) -> str:
    job = jobs.create_job(ctx.db, "AAPL", {}, clock=ctx.clock)
    jobs.mark_failed(ctx.db, job.job_id, PATH_ERROR, clock=ctx.clock)
    return job.job_id


@pytest.fixture
def token_client(ctx: AppContext) -> Iterator[TestClient]:
    ctx.settings.api_token = TOKEN
    with TestClient(create_app(context=ctx)) as client:
        yield client


def test_job_errors_name_no_server_path_without_the_token(
    token_client: TestClient, ctx: AppContext
) -> None:
    job_id = _failed_job(ctx)
    status = token_client.get(f"/api/v1/training/status/{job_id}").json()
    listed = token_client.get("/api/v1/training/jobs").json()["jobs"][0]
    for job in (status, listed):
        assert job["status"] == "failed" and job["error"]
        assert SECRET_PATH not in job["error"] and "csv" not in job["error"].lower()
        assert "server log" in job["error"] and job_id in job["error"]
    wrong = token_client.get(
        f"/api/v1/training/status/{job_id}", headers={"Authorization": "Bearer nope"}
    )
    assert SECRET_PATH not in wrong.json()["error"]


def test_job_errors_are_whole_with_the_token(token_client: TestClient, ctx: AppContext) -> None:
    job_id = _failed_job(ctx)
    status = token_client.get(f"/api/v1/training/status/{job_id}", headers=AUTH).json()
    assert status["error"] == PATH_ERROR
    listed = token_client.get("/api/v1/training/jobs", headers=AUTH).json()["jobs"][0]
    assert listed["error"] == PATH_ERROR


def test_a_tokenless_server_reached_from_outside_hides_job_errors(ctx: AppContext) -> None:
    """``serve --insecure`` on a public address: the connection arrives on a non-loopback
    address, so nobody there is trusted with server paths."""
    job_id = _failed_job(ctx)
    with TestClient(create_app(context=ctx), base_url="http://192.0.2.10:8000") as client:
        job = client.get(f"/api/v1/training/status/{job_id}").json()
    assert SECRET_PATH not in job["error"]
    with TestClient(create_app(context=ctx), base_url="http://127.0.0.1:8000") as client:
        assert client.get(f"/api/v1/training/status/{job_id}").json()["error"] == PATH_ERROR


def test_health_names_no_database_error_without_the_token(
    token_client: TestClient, ctx: AppContext, tmp_path: Path
) -> None:
    missing = tmp_path / "secret-db-folder" / "no" / "db.sqlite"
    engine, ctx.db.engine = ctx.db.engine, create_engine(f"sqlite:///{missing}")
    ctx.settings.models_dir = tmp_path / "a-file" / "models"
    (tmp_path / "a-file").write_text("not a folder")
    try:
        anonymous = token_client.get("/health")
        authorised = token_client.get("/health", headers=AUTH).json()
    finally:
        ctx.db.engine.dispose()
        ctx.db.engine = engine
    assert anonymous.status_code == 503
    body = anonymous.json()
    assert body["database"].startswith("error") and body["models_dir"].startswith("error")
    assert "secret-db-folder" not in anonymous.text and str(tmp_path) not in anonymous.text
    assert (
        "secret-db-folder" in authorised["database"]
        or "OperationalError" in (authorised["database"])
    )
    assert str(tmp_path / "a-file") in authorised["models_dir"]
