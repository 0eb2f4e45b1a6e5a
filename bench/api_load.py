"""The API under load: ``wrk`` on ``POST /api/v1/predict``, idle and while a model trains.

``stock-lstm serve`` runs over the bench world on a loopback port. ``wrk`` (one thread,
``CONNECTIONS`` connections, ``DURATION`` seconds, 5 s timeout) posts ``{"ticker": "AAPL",
"days_ahead": 5}`` (``bench/predict.lua``), after an uncounted ``WARMUP_SECONDS`` run.
Then the same again while a training job started through ``POST /api/v1/training/start``
(another ticker, enough epochs to outlast the window) is running: the run only counts if the
job's epoch counter moved during it. Errors are responses with status >= 400 plus socket
errors (connect, read, write, timeout).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ApiServer, emit, figure_args, http_json, row, wait_until, world_from

CONNECTIONS = 20
DURATION = 30
#: An uncounted wrk run first: the first 30 s of a new server under load once ran at two
#: thirds of the rate of the next 30 s (cause not pinned down); the figure is the steady state.
WARMUP_SECONDS = 5
#: Epochs of the background training: far more than the window needs; it is stopped after.
BACKGROUND_EPOCHS = 500
LUA = Path(__file__).with_name("predict.lua")


def run_wrk(url: str, seconds: int) -> dict[str, Any]:
    """One bounded wrk run against ``url``; its JSON summary plus derived rates."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s"]
    done = subprocess.run(
        [*command, "-s", str(LUA), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK-JSON "))
    stats = json.loads(line.removeprefix("WRK-JSON "))
    stats["errors"] = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    stats["requests_per_s"] = stats["requests"] / (stats["duration_us"] / 1e6)
    return stats


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the notebook kernel of a training job)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(part) for part in text.split()]
    return found


def stop_kernels(pids: list[int]) -> None:
    """The kernel leaves by itself once its server is gone; make sure it did."""
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGTERM)


def job(server: ApiServer, job_id: str) -> dict[str, Any]:
    status, body = http_json("GET", f"{server.url}/api/v1/training/status/{job_id}")
    if status != 200:
        raise RuntimeError(f"bench: training status answered {status}: {body}")
    return dict(body)


def describe(stats: dict[str, Any]) -> str:
    return (
        f"{stats['requests_per_s']:,.0f} req/s, p50 {stats['p50_us'] / 1e3:.1f} ms, "
        f"p99 {stats['p99_us'] / 1e3:.1f} ms, {stats['errors']} errors"
    )


def main() -> None:
    args = figure_args(__doc__ or "")
    if shutil.which("wrk") is None:
        emit(
            [row("API under load", "skipped: wrk is not installed", "apt-get install wrk")],
            {"skipped": "wrk not installed"},
        )
        return
    seconds = 5 if args.quick else DURATION
    with world_from(args.world) as world, tempfile.TemporaryDirectory() as tmp:
        trainee = next(t for t in world.tickers if t != "AAPL")
        with ApiServer(world, Path(tmp) / "api.log") as server:
            predict_url = server.url + "/api/v1/predict"
            for _ in range(20):  # load the model, warm the caches
                http_json("POST", predict_url, {"ticker": "AAPL", "days_ahead": 5})
            run_wrk(predict_url, WARMUP_SECONDS)  # not counted: see the module docstring
            idle = run_wrk(predict_url, seconds)

            status, started = http_json(
                "POST",
                server.url + "/api/v1/training/start",
                {"ticker": trainee, "epochs": BACKGROUND_EPOCHS, "patience": 0},
            )
            if status != 202:
                raise RuntimeError(f"bench: training start answered {status}: {started}")
            job_id = started["job_id"]
            wait_until(lambda: job(server, job_id)["current_epoch"] >= 1, 180, "the first epoch")
            before = job(server, job_id)
            training = run_wrk(predict_url, seconds)
            after = job(server, job_id)
            kernels = children(server.process.pid)
        stop_kernels(kernels)
    epochs = after["current_epoch"] - before["current_epoch"]
    if after["status"] != "running":
        raise RuntimeError(f"bench: the training did not run through the window: {after}")
    how = f"wrk -t1 -c{CONNECTIONS} -d{seconds}s on 127.0.0.1"
    emit(
        [
            row("API: POST /api/v1/predict under load", describe(idle), how),
            row(
                f"API: the same while {trainee} trains",
                describe(training),
                how + f"; the job ran {epochs} epochs during the window",
            ),
        ],
        {"idle": idle, "training": training, "training_epochs_in_window": epochs},
    )


if __name__ == "__main__":
    main()
