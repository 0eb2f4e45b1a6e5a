"""Helpers shared by the API tests: a fast in-process trainer, bounded polling, a live server.

Every wait here is a loop of short sleeps (at most ``POLL_SECONDS``) with a deadline, so a
hung job or server fails the test quickly with the last thing it saw.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select

from stock_lstm.api.training_pool import TrainingTask
from stock_lstm.db import Database, ModelRegistry, PriceCache, TrainingJob
from stock_lstm.models import jobs
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import AppContext, register_outcome, train_ticker

POLL_SECONDS = 0.05
#: Defaults that train in well under a second on 600 rows; the caller's values win.
TINY_PARAMS: dict[str, int | float] = {
    "epochs": 2,
    "patience": 0,
    "sequence_length": 10,
    "hidden_size": 8,
    "num_layers": 1,
    "dropout": 0.0,
    "batch_size": 64,
}

T = TypeVar("T")


def fast_training(ctx: AppContext, task: TrainingTask) -> None:
    """The notebook's two steps (``train_ticker`` + ``register_outcome``) in-process, with a
    one-line HTML report under the reports folder and the job completed, as the runner
    would leave them."""
    params = TrainParams.from_dict({**TINY_PARAMS, **task.hyperparameters})
    outcome = train_ticker(
        ctx, task.ticker, params, start=task.start, end=task.end, job_id=task.job_id
    )
    report = Path(ctx.settings.reports_dir) / task.ticker / f"{task.job_id}.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f"<html><body><h1>{task.ticker} report</h1></body></html>")
    record = register_outcome(ctx, outcome, report_path=str(report), job_id=task.job_id)
    # The runner completes a job once its report is written (pipeline.runner._finish_job).
    jobs.mark_completed(ctx.db, task.job_id, record.version_id)


class GatedTraining:
    """``fast_training`` that waits for ``release()``, so a job stays queued/running on cue."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, ctx: AppContext, task: TrainingTask) -> None:
        self.started.set()
        if not self.gate.wait(timeout=30):
            raise RuntimeError("gated training was never released")
        fast_training(ctx, task)

    def release(self) -> None:
        self.gate.set()


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def wait_for_job(client: Any, job_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``GET /api/v1/training/status/{job_id}`` until completed or failed."""

    def finished() -> dict[str, Any] | None:
        response = client.get(f"/api/v1/training/status/{job_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["status"] in ("completed", "failed") else None

    return wait_until(finished, timeout=timeout, what=f"training job {job_id}")


@dataclass(frozen=True)
class RowCounts:
    jobs: int
    models: int
    prices: int


def row_counts(db: Database) -> RowCounts:
    with db.session() as session:
        return RowCounts(
            jobs=session.scalar(select(func.count()).select_from(TrainingJob)) or 0,
            models=session.scalar(select(func.count()).select_from(ModelRegistry)) or 0,
            prices=session.scalar(select(func.count()).select_from(PriceCache)) or 0,
        )


def metric_value(metrics_text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None if it is absent."""
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        if all(found.get(key) == f'"{wanted}"' for key, wanted in labels.items()):
            return float(value)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(settings: Any, **extra: str) -> dict[str, str]:
    """This process's environment with ``STOCK_LSTM_*`` pointing at ``settings``' folders."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STOCK_LSTM_")}
    env.update(
        {
            "STOCK_LSTM_DATABASE_URL": settings.database_url,
            "STOCK_LSTM_SOURCE": settings.source,
            "STOCK_LSTM_MODELS_DIR": str(settings.models_dir),
            "STOCK_LSTM_REPORTS_DIR": str(settings.reports_dir),
            "STOCK_LSTM_TORCH_THREADS": "1",
            **extra,
        }
    )
    return env


@contextmanager
def running_process(
    argv: list[str], *, log_path: Path, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` with output to ``log_path``; terminate it (then kill) on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_for_http(url: str, *, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early, with the log, if the process died."""

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited early:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=timeout, what=url)
    except AssertionError:
        raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}") from None


@contextmanager
def api_server(settings: Any, tmp_path: Path, **env: str) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "stock_lstm.api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = tmp_path / "uvicorn.log"
    with running_process(argv, log_path=log, cwd=tmp_path, env=server_env(settings, **env)) as p:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base_url}/health", process=p, log=log, timeout=30)
        yield base_url


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (a stand-in for a killed owner)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def set_job_owner(db: Database, job_id: str, host: str | None, pid: int | None) -> None:
    """Rewrite a job's owner, as if another (perhaps dead) process had taken it."""
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        assert row is not None, job_id
        row.owner_host, row.owner_pid = host, pid
