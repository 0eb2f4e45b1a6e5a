"""``make cluster``: a scheduler and worker processes that outlive the command, seen by
``status``, stopped by ``stop`` (``scripts/cluster.py``; PostgreSQL is covered by
``make test-postgres``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stock_lstm.models.jobs import process_is_alive as _alive

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(ROOT / "scripts" / "cluster.py")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCRIPT, *argv], capture_output=True, text=True, timeout=120)


def test_start_status_and_stop_a_two_worker_cluster(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    where = ["--state-dir", str(state_dir)]
    port = _free_port()
    started = _run("start", "--workers", "2", "--port", str(port), "--dashboard-port", "0", *where)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((state_dir / "state.json").read_text())
        pids = [state["scheduler"], *state["workers"]]
        assert len(set(pids)) == 3 and all(_alive(pid) for pid in pids)  # three processes
        env = (state_dir / "env").read_text()
        assert f"STOCK_LSTM_DASK_SCHEDULER=tcp://127.0.0.1:{port}" in env
        assert "STOCK_LSTM_MODELS_DIR=/" in env  # absolute: the cluster refuses relative
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            assert len(client.scheduler_info()["workers"]) == 2
        assert "worker-2 pid" in _run("status", *where).stdout
        os.kill(state["workers"][0], 9)  # a worker dies; repair starts another
        repaired = _run("repair", *where)
        assert repaired.returncode == 0 and "worker-1 restarted" in repaired.stdout
        state = json.loads((state_dir / "state.json").read_text())
        pids = [state["scheduler"], *state["workers"]]
        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            assert len(client.scheduler_info()["workers"]) == 2
        again = _run("start", "--port", str(_free_port()), *where)
        assert again.returncode != 0 and "already" in again.stderr
    finally:
        stopped = _run("stop", *where)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_alive(pid) for pid in pids)
    assert not (state_dir / "state.json").exists() and not (state_dir / "env").exists()
    assert "no cluster running" in _run("status", *where).stderr
