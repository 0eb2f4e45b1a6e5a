"""A miniature real deployment: ``dask scheduler`` and ``dask worker`` as separate processes on
loopback, a throw-away PostgreSQL server, and the command line and the API sending work to it.

The workers start in a folder of their own with no ``STOCK_LSTM_*`` variables, so a run that
works here got every setting and path from its task's arguments. The PostgreSQL server comes
from ``make test-postgres`` (``STOCK_LSTM_TEST_DATABASE_URL``) or is started with
``scripts/test_postgres.py``; without PostgreSQL binaries the module is skipped. Every
process is stopped at the end, also when a test fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.engine import make_url

from stock_lstm.config import Settings
from stock_lstm.db import Database
from stock_lstm.models import jobs
from stock_lstm.models.registry import list_models

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: Set by ``make test-postgres`` to its server's URL (see conftest.py).
TEST_DATABASE_URL_ENV = "STOCK_LSTM_TEST_DATABASE_URL"
BIN = Path(sys.executable).parent
TINY = {"epochs": 2, "patience": 0, "sequence_length": 10, "hidden_size": 8, "num_layers": 1}
#: Upper bounds for each wait on the cluster (seconds); never reached when all is well.
START_TIMEOUT = 120
RUN_TIMEOUT = 420


def _postgres_script() -> ModuleType | None:
    """``scripts/test_postgres.py`` (``make test-postgres``), which can start a server."""
    path = ROOT / "scripts" / "test_postgres.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("stock_lstm_test_postgres", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    """A new database on ``server_url``'s server, dropped afterwards even if still in use."""
    from sqlalchemy import create_engine, text

    server = make_url(server_url)
    name = f"stock_lstm_cluster_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        yield server.set(database=name, query={}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database: on ``make test-postgres``'s server, or on one started here."""
    server_url = os.environ.get(TEST_DATABASE_URL_ENV)
    if server_url and make_url(server_url).get_backend_name() == "postgresql":
        with _fresh_database(server_url) as url:
            yield url
        return
    script = _postgres_script()
    bindir = script.find_bindir() if script else None
    if script is None or bindir is None:
        pytest.skip(
            "needs PostgreSQL server binaries (initdb, pg_ctl) and scripts/test_postgres.py: "
            "apt-get install postgresql, or run `make test-postgres`"
        )
    with script.running_server(bindir) as server:
        yield script.create_database(server, "stock_lstm_cluster")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group (the worker's kernels too), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _clean_environment() -> dict[str, str]:
    """This environment without any ``STOCK_LSTM_*`` setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LSTM_")}


@dataclass(frozen=True)
class RealCluster:
    address: str
    worker_pid: int  # the `dask worker` command; its worker processes are its children


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {
        **_clean_environment(),
        # A worker death re-runs a task once, as the local cluster does (see stock_lstm.cluster).
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
        "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
    }
    commands = {
        "scheduler": [
            str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
            "--port", address.rsplit(":", 1)[1], "--no-dashboard",
        ],
        "worker": [
            str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
            "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(folder / "spill"),
        ],
    }  # fmt: skip
    with ExitStack() as stack:
        processes = {}
        for name, command in commands.items():
            workdir = folder / name
            workdir.mkdir()
            log = stack.enter_context((folder / f"{name}.log").open("wb"))
            process = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            stack.callback(_stop, process)
            processes[name] = process
        try:
            with Client(address, timeout=START_TIMEOUT) as client:
                client.wait_for_workers(2, timeout=START_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in folder.glob("*.log"))
            pytest.fail(f"the Dask cluster did not start: {exc}\n{logs}")
        yield RealCluster(address, processes["worker"].pid)


@pytest.fixture
def shared_settings(tmp_path: Path, price_dir: Path, postgres_url: str) -> Settings:
    """Absolute folders (every worker mounts them: same machine) and the PostgreSQL database."""
    return Settings(
        database_url=postgres_url,
        source=f"csv:{price_dir}",
        models_dir=tmp_path / "shared" / "models",
        reports_dir=tmp_path / "shared" / "reports",
        torch_threads=1,
    )


def _descendants(pid: int) -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process(pid).children(recursive=True)}


def _models(settings: Settings) -> list:
    db = Database(settings.database_url)
    try:
        return list_models(db)
    finally:
        db.dispose()


def test_the_cli_and_the_api_train_on_the_real_cluster_workers(
    real_cluster: RealCluster, shared_settings: Settings, tmp_path: Path
) -> None:
    """A server and a batch share the cluster: the API's job and the CLI's tickers run at once
    on the two worker processes (which also keeps this test to one round of training)."""
    from distributed import wait
    from fastapi.testclient import TestClient

    from stock_lstm.api.app import create_app
    from stock_lstm.api.training_pool import ClusterTrainingPool

    env = {
        **_clean_environment(),
        "STOCK_LSTM_DASK_SCHEDULER": real_cluster.address,
        "STOCK_LSTM_DATABASE_URL": shared_settings.database_url,
        "STOCK_LSTM_SOURCE": shared_settings.source,
        "STOCK_LSTM_MODELS_DIR": str(shared_settings.models_dir),
        "STOCK_LSTM_REPORTS_DIR": str(shared_settings.reports_dir),
    }
    tiny = [arg for name, value in TINY.items() for arg in ("-p", name, str(value))]
    caller = tmp_path / "caller"
    caller.mkdir()
    app = create_app(shared_settings.model_copy(update={"dask_scheduler": real_cluster.address}))
    with TestClient(app) as client:
        pool = app.state.training_pool
        assert isinstance(pool, ClusterTrainingPool)
        started = client.post("/api/v1/training/start", json={"ticker": "TEST", **TINY})
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        done = subprocess.run(
            [str(BIN / "stock-lstm"), "run", "train", "--tickers", "AAPL", *tiny, "--json"],
            cwd=caller,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        wait(list(pool._futures), timeout=RUN_TIMEOUT)
        status = client.get(f"/api/v1/training/status/{job_id}").json()

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Dask scheduler {real_cluster.address}" in done.stderr
    rows = json.loads(done.stdout)["results"]
    assert [(row["ticker"], row["status"]) for row in rows] == [("AAPL", "ok")]
    assert status["status"] == jobs.COMPLETED, status
    # Both ran in the `dask worker` command's processes, not here and not in the CLI.
    worker_pid = int(rows[0]["worker"].rsplit(":", 1)[1])
    assert worker_pid in _descendants(real_cluster.worker_pid)

    models = {m.ticker: m for m in _models(shared_settings)}
    assert sorted(models) == ["AAPL", "TEST"] and all(m.is_active for m in models.values())
    assert models["TEST"].version_id == status["version_id"]
    assert models["AAPL"].version_id == rows[0]["version_id"]
    assert all(
        Path(m.model_path).is_file() and Path(m.report_path).is_file() for m in models.values()
    )
    assert not any(caller.iterdir())  # nothing landed in the caller's folder
