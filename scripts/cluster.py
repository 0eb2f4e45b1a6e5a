"""``make cluster``: a real multi-process Dask cluster on this machine, the way a user runs one.

Why a script: a local cluster inside one command (the default) hides what a deployment
meets: a scheduler and workers that are separate OS processes, live across commands, and can
die on their own. This starts ``dask scheduler`` and ``WORKERS`` single-process ``dask
worker``s in the background (each its own process group, logs in ``.cluster/``), optionally a
throw-away PostgreSQL server for the registry (``POSTGRES=1``: a cluster refuses SQLite), and
writes ``.cluster/env`` with the settings a client needs:

    make cluster WORKERS=2 POSTGRES=1
    . .cluster/env && make train-all CSV_DIR=../shared/data/universe RUN_ID=night1
    make cluster-status            # processes, their pids (kill one to drill a fault)
    make cluster-repair            # restart a dead scheduler or worker; the database stays
    make cluster-stop              # everything stopped; the PostgreSQL data is deleted

Usage: ``.venv/bin/python scripts/cluster.py start [--workers N] [--port P] [--postgres]``,
``status``, ``repair``, ``stop``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Where the state, the logs and the client's env file live (``--state-dir``).
DEFAULT_STATE_DIR = ROOT / ".cluster"
STATE_DIR = DEFAULT_STATE_DIR
STATE = STATE_DIR / "state.json"
ENV_FILE = STATE_DIR / "env"


def _use_state_dir(folder: Path) -> None:
    global STATE_DIR, STATE, ENV_FILE
    STATE_DIR = folder.resolve()
    STATE, ENV_FILE = STATE_DIR / "state.json", STATE_DIR / "env"


#: Seconds to wait for the scheduler's port and for the workers to register.
START_TIMEOUT = 60.0


def log(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def _postgres_script() -> ModuleType:
    """``scripts/test_postgres.py``: this script's folder is on ``sys.path`` when it runs."""
    import test_postgres

    return test_postgres


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead): the package's own check of job owners."""
    from stock_lstm.models.jobs import process_is_alive

    return process_is_alive(pid)


def _spawn(argv: list[str], log_name: str, env: dict[str, str]) -> int:
    """A background process in its own session (it outlives ``make``), output to a log."""
    with open(STATE_DIR / log_name, "ab") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=STATE_DIR,  # not the project: workers get every path from their tasks
            start_new_session=True,
        )
    return process.pid


def _wait_for_port(port: int, pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise SystemExit(f"the scheduler exited at start: see {STATE_DIR / 'scheduler.log'}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"the scheduler did not listen on {port} in {START_TIMEOUT:.0f} s")


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT) as client:
        client.wait_for_workers(count, timeout=START_TIMEOUT)


def _worker_env() -> dict[str, str]:
    """The workers' environment without ``STOCK_LSTM_*``: every setting comes with a task."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LSTM_")}


def _start_scheduler(port: int, dashboard: int) -> int:
    env = {**_worker_env(), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    argv = [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    return _spawn([*argv, "--dashboard-address", f"127.0.0.1:{dashboard}"], "scheduler.log", env)


def _start_worker(address: str, index: int) -> int:
    # One thread: a task sets its notebook kernel's environment for its process. No nanny:
    # the pid is the worker itself, so killing it is a worker dying (a drill, or a crash).
    argv = [str(BIN / "dask"), "worker", address, "--no-nanny", "--nthreads", "1"]
    return _spawn(
        [*argv, "--name", f"worker-{index + 1}"], f"worker-{index + 1}.log", _worker_env()
    )


def repair() -> int:
    """Restart whatever died (the scheduler, workers); the database and its data stay."""
    state = _read_state()
    if not _alive(int(state["scheduler"])):  # type: ignore[call-overload]
        state["scheduler"] = _start_scheduler(int(state["port"]), int(state["dashboard"]))  # type: ignore[call-overload]
        _wait_for_port(int(state["port"]), int(state["scheduler"]))  # type: ignore[call-overload]
        log(f"scheduler restarted (pid {state['scheduler']})")
    workers: list[int] = list(state["workers"])  # type: ignore[call-overload]
    for index, pid in enumerate(workers):
        if not _alive(pid):
            workers[index] = _start_worker(str(state["address"]), index)
            log(f"worker-{index + 1} restarted (pid {workers[index]})")
    state["workers"] = workers
    STATE.write_text(json.dumps(state, indent=2))
    _wait_for_workers(str(state["address"]), len(workers))
    return 0


def start(workers: int, port: int, postgres: bool, dashboard: int = 8787) -> int:
    """Start everything; what started before a failure is stopped by ``main``."""
    STATE_DIR.mkdir(exist_ok=True)
    state: dict[str, object] = {"address": f"tcp://127.0.0.1:{port}", "workers": []}
    state["port"], state["dashboard"] = port, dashboard
    state["scheduler"] = _start_scheduler(port, dashboard)
    STATE.write_text(json.dumps(state, indent=2))
    _wait_for_port(port, int(state["scheduler"]))  # type: ignore[call-overload]
    for index in range(workers):
        state["workers"].append(_start_worker(str(state["address"]), index))  # type: ignore[union-attr]
        STATE.write_text(json.dumps(state, indent=2))
    _wait_for_workers(str(state["address"]), workers)
    lines = [
        f"export STOCK_LSTM_DASK_SCHEDULER={state['address']}",
        # A cluster refuses relative folders: each worker would resolve them on its own.
        f"export STOCK_LSTM_MODELS_DIR={ROOT / 'models'}",
        f"export STOCK_LSTM_REPORTS_DIR={ROOT / 'reports'}",
    ]
    if postgres:
        pg = _postgres_script()
        bindir = pg.find_bindir() or pg.install_postgresql()
        server = pg.start_server(bindir, STATE_DIR / "postgres")
        state["postgres"] = {
            "bindir": str(bindir),
            "folder": str(server.folder),
            "port": server.port,
            "password": server.password,
            "run_as": server.run_as,
        }
        url = pg.create_database(server, "stock_lstm")
        state["database_url"] = url
        STATE.write_text(json.dumps(state, indent=2))
        lines.append(f"export STOCK_LSTM_DATABASE_URL={url}")
    ENV_FILE.write_text("\n".join(lines) + "\n")
    os.chmod(ENV_FILE, 0o600)  # it may hold the database password
    log(f"scheduler {state['address']} (pid {state['scheduler']}), {workers} worker process(es)")
    log(f"dashboard http://127.0.0.1:{dashboard}/status; logs in {STATE_DIR}")
    log(f"use it: . {ENV_FILE} && make train-all CSV_DIR=DIR")
    return 0


def _read_state() -> dict[str, object]:
    if not STATE.exists():
        raise SystemExit("no cluster running here: make cluster WORKERS=2 starts one")
    return json.loads(STATE.read_text())


def status() -> int:
    state = _read_state()
    scheduler = int(state["scheduler"])  # type: ignore[call-overload]
    log(f"scheduler {state['address']} pid {scheduler}: {'up' if _alive(scheduler) else 'DEAD'}")
    for index, pid in enumerate(state["workers"], 1):  # type: ignore[arg-type]
        log(f"worker-{index} pid {pid}: {'up' if _alive(pid) else 'dead'}")
    if "postgres" in state:
        log(f"PostgreSQL on 127.0.0.1:{state['postgres']['port']}")  # type: ignore[index]
    return 0


def _stop_pid(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
            with contextlib.suppress(ChildProcessError):  # reaps it if it is our child
                os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            return


def stop() -> int:
    state = _read_state()
    for pid in state["workers"]:  # type: ignore[attr-defined]
        _stop_pid(int(pid))
    _stop_pid(int(state["scheduler"]))  # type: ignore[call-overload]
    if "postgres" in state:
        pg = _postgres_script()
        info = state["postgres"]
        pg.stop_server(
            pg.Server(
                Path(info["bindir"]),  # type: ignore[index]
                Path(info["folder"]),  # type: ignore[index]
                int(info["port"]),  # type: ignore[index]
                str(info["password"]),  # type: ignore[index]
                info["run_as"],  # type: ignore[index]
            )
        )
    STATE.unlink()
    ENV_FILE.unlink(missing_ok=True)
    log("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start")
    begin.add_argument("--workers", type=int, default=2)
    begin.add_argument("--port", type=int, default=8786)
    begin.add_argument("--postgres", action="store_true")
    begin.add_argument("--dashboard-port", type=int, default=8787)
    others = [commands.add_parser(name) for name in ("status", "repair", "stop")]
    for command in (begin, *others):
        command.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    _use_state_dir(args.state_dir)
    if args.command == "start":
        if STATE.exists():
            raise SystemExit(f"a cluster is already described in {STATE}: make cluster-stop first")
        if not 1 <= args.workers <= 256:
            raise SystemExit(f"WORKERS must be 1..256, got {args.workers}")
        try:
            return start(args.workers, args.port, args.postgres, args.dashboard_port)
        except BaseException:
            if STATE.exists():
                stop()
            raise
    return {"status": status, "repair": repair, "stop": stop}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
