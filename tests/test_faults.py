"""Faults survived: a training process killed with SIGKILL (during an epoch, while saving its
files, inside a notebook kernel), a corrupted database file and a models folder that cannot
take files.

Each kill test trains for real in a child process (``fault_driver.py`` runs the CLI), kills
it at a known point and then checks what a user would see next: the registry names only
complete files with the fingerprints it recorded, the model that was active before still is
and still predicts, and the job is marked failed by the next CLI command or API start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import TINY_PARAMS, server_env, wait_until
from fastapi.testclient import TestClient

from stock_lstm.api import create_app
from stock_lstm.cli import main
from stock_lstm.config import Settings
from stock_lstm.data.cache import load_cached_prices
from stock_lstm.db.integrity import check_database_file, sqlite_file
from stock_lstm.errors import DatabaseFileError
from stock_lstm.models import jobs
from stock_lstm.models.artifacts import TEMP_SUFFIX, sha256_file
from stock_lstm.models.registry import ModelRecord, get_active_model, list_models
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import (
    AppContext,
    predict_ticker,
    register_outcome,
    sync_ticker,
    train_ticker,
)

DRIVER = Path(__file__).with_name("fault_driver.py")
#: Tiny network, early stopping off and a large epoch budget: still training when killed.
ENDLESS = [
    "--epochs",
    "1000",
    "--patience",
    "0",
    "--sequence-length",
    "10",
    "--hidden-size",
    "8",
    "--num-layers",
    "1",
    "--batch-size",
    "64",
    "--no-progress",
]
#: Three epochs: reaches the artifact save within seconds.
SHORT = ["--epochs", "3", *ENDLESS[2:]]
CHILD_TIMEOUT = 120.0


# --- helpers --------------------------------------------------------------------------------


def train_in_process(ctx: AppContext, ticker: str = "AAPL", **params: int) -> ModelRecord:
    """A tiny model, registered (and activated by the gate's first-model rule)."""
    outcome = train_ticker(ctx, ticker, TrainParams.from_dict({**TINY_PARAMS, **params}))
    return register_outcome(ctx, outcome, force=True)


@pytest.fixture
def active(ctx: AppContext) -> ModelRecord:
    """AAPL's active model before the fault: it must survive every fault below."""
    record = train_in_process(ctx)
    assert record.is_active
    return record


def start_child(
    settings: Settings, tmp_path: Path, *argv: str, name: str = "child"
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(DRIVER), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(settings),
            cwd=tmp_path,
        )
    return process, log


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def kill_9(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def alive_or_fail(process: subprocess.Popen[bytes], log: Path) -> None:
    if process.poll() is not None:
        raise AssertionError(f"child exited early ({process.returncode}):\n{log.read_text()}")


def assert_registry_consistent(ctx: AppContext) -> list[ModelRecord]:
    """Every registry row names two complete files that match the recorded fingerprints."""
    records = list_models(ctx.db)
    for record in records:
        for path, digest in (
            (Path(record.model_path), record.model_sha256),
            (Path(record.scaler_path), record.scaler_sha256),
        ):
            assert path.is_file(), f"{record.version_id} points at missing {path}"
            assert not path.name.endswith(TEMP_SUFFIX), path
            assert sha256_file(path) == digest, f"{path} is not what was registered"
    return records


def assert_previous_model_serves(ctx: AppContext, previous: ModelRecord) -> None:
    assert get_active_model(ctx.db, "AAPL").version_id == previous.version_id
    ctx.model_cache.clear()  # load from disk again, through the checksum
    forecast = predict_ticker(ctx, "AAPL", 3)
    assert forecast.version_id == previous.version_id and len(forecast.predictions) == 3


def reconcile_with(
    reconciler: str, settings: Settings, ctx: AppContext, capsys: pytest.CaptureFixture[str]
) -> None:
    """Start what a user would start next: any CLI command, or the API."""
    if reconciler == "cli":
        assert main(["models", "--json"]) == 0
        assert "was interrupted" in capsys.readouterr().err
    else:
        with TestClient(create_app(settings)) as client:
            assert client.get("/health").status_code == 200


# --- kill -9 during an epoch ----------------------------------------------------------------


@pytest.mark.parametrize("reconciler", ["cli", "api"])
def test_kill_9_during_an_epoch_fails_the_job_and_keeps_the_active_model(
    cli_env: Settings,
    ctx: AppContext,
    active: ModelRecord,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
    reconciler: str,
) -> None:
    files_before = sorted(Path(cli_env.models_dir).iterdir())
    process, log = start_child(cli_env, tmp_path, "--", "train", "AAPL", "--job-id", "J1", *ENDLESS)
    children.append(process)

    def training() -> jobs.JobRecord | None:
        alive_or_fail(process, log)
        try:
            job = jobs.get_job(ctx.db, "J1")
        except Exception:
            return None
        return job if job.current_epoch >= 1 else None

    job = wait_until(training, timeout=CHILD_TIMEOUT, what="the child's first epoch")
    assert job.status == "running"
    assert (job.owner_host, job.owner_pid) == (socket.gethostname(), process.pid)
    kill_9(process)

    assert jobs.get_job(ctx.db, "J1").status == "running"  # nobody could say otherwise yet
    reconcile_with(reconciler, cli_env, ctx, capsys)
    job = jobs.get_job(ctx.db, "J1")
    assert job.status == "failed"
    assert job.error.startswith(f"interrupted: its process {process.pid} on ")
    assert [r.version_id for r in assert_registry_consistent(ctx)] == [active.version_id]
    assert sorted(Path(cli_env.models_dir).iterdir()) == files_before
    assert_previous_model_serves(ctx, active)


def test_a_live_training_is_not_failed_by_another_command(
    cli_env: Settings,
    ctx: AppContext,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    process, log = start_child(cli_env, tmp_path, "--", "train", "MSFT", "--job-id", "J2", *ENDLESS)
    children.append(process)

    def training() -> bool:
        alive_or_fail(process, log)
        try:
            return jobs.get_job(ctx.db, "J2").current_epoch >= 1
        except Exception:
            return False

    wait_until(training, timeout=CHILD_TIMEOUT, what="the child's first epoch")
    assert main(["models", "--json"]) == 0
    with TestClient(create_app(cli_env)) as client:
        assert client.get("/api/v1/training/status/J2").json()["status"] == "running"
    assert "interrupted" not in capsys.readouterr().err
    assert jobs.get_job(ctx.db, "J2").status == "running"


# --- kill -9 while saving the artifacts -----------------------------------------------------


def stray_temp_files(models_dir: Path) -> list[Path]:
    return sorted(models_dir.glob(f".*{TEMP_SUFFIX}"))


def kind_of(path: Path) -> str:
    if path.name.endswith(f".id{TEMP_SUFFIX}"):
        return "id reservation"  # held from choosing the version id until both files exist
    return "scaler" if "_scaler." in path.name else "model"


@pytest.mark.parametrize("stop_at", ["model-temp", "scaler-temp", "before-registry"])
def test_kill_9_while_saving_artifacts_registers_nothing_half_written(
    cli_env: Settings,
    ctx: AppContext,
    active: ModelRecord,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
    stop_at: str,
) -> None:
    models_dir = Path(cli_env.models_dir)
    registered_files = {Path(active.model_path), Path(active.scaler_path)}
    stopped = tmp_path / "stopped"
    argv = ["--stop-at", stop_at, "--signal", str(stopped), "--"]
    process, log = start_child(cli_env, tmp_path, *argv, "train", "AAPL", "--job-id", "J3", *SHORT)
    children.append(process)

    def at_stop_point() -> bool:
        alive_or_fail(process, log)
        return stopped.exists()

    wait_until(at_stop_point, timeout=CHILD_TIMEOUT, what=f"the child to reach {stop_at}")
    # The child really is where the test says: what is on disk at that instant.
    unregistered = sorted(set(models_dir.iterdir()) - registered_files)
    temp_kinds = sorted(kind_of(p) for p in unregistered if p.name.endswith(TEMP_SUFFIX))
    final_kinds = [kind_of(p) for p in unregistered if not p.name.endswith(TEMP_SUFFIX)]
    assert (temp_kinds, final_kinds) == {
        "model-temp": (["id reservation", "model"], []),
        "scaler-temp": (["id reservation", "scaler"], ["model"]),
        "before-registry": ([], ["model", "scaler"]),
    }[stop_at], unregistered
    kill_9(process)

    assert_previous_model_serves(ctx, active)
    reconcile_with("cli", cli_env, ctx, capsys)
    assert jobs.get_job(ctx.db, "J3").status == "failed"
    records = assert_registry_consistent(ctx)
    assert [r.version_id for r in records] == [active.version_id]  # nothing half-saved counts

    # The next save works, registers only its own complete files and never a leftover.
    for leftover in stray_temp_files(models_dir):
        os.utime(leftover, (time.time() - 7200, time.time() - 7200))  # a save dead for 2 h
    in_progress = models_dir / ".MSFT_20260101_000000.pt.abcd1234.tmp"  # another live save
    in_progress.write_bytes(b"partial")
    ctx.clock.advance(seconds=1)
    newer = train_in_process(ctx, seed=7)
    records = assert_registry_consistent(ctx)
    assert {r.version_id for r in records} == {active.version_id, newer.version_id}
    assert stray_temp_files(models_dir) == [in_progress]  # stale ones gone, the fresh one kept


# --- kill -9 of a notebook kernel -----------------------------------------------------------


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def child_pids(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if parent_pid(int(stat.parent.name)) == pid:
                found.append(int(stat.parent.name))
    return found


#: A training notebook that outlasts the test unless something stops it.
LONG_NOTEBOOK_TRAINING = {
    "epochs": 1000,
    "patience": 0,
    "sequence_length": 10,
    "hidden_size": 8,
    "num_layers": 1,
    "batch_size": 64,
}


def start_notebook_training(
    cli_env: Settings, ctx: AppContext, tmp_path: Path, job_id: str
) -> tuple[subprocess.Popen[bytes], Path, jobs.JobRecord]:
    """``stock-lstm run train`` for ``job_id``, returned once its kernel finished an epoch."""
    argv = ["run", "train", "--ticker", "AAPL", "--no-progress", "-p", "job_id", job_id]
    for name, value in LONG_NOTEBOOK_TRAINING.items():
        argv += ["-p", name, str(value)]
    process, log = start_child(cli_env, tmp_path, "--", *argv)

    def training() -> jobs.JobRecord | None:
        alive_or_fail(process, log)
        try:
            job = jobs.get_job(ctx.db, job_id)
        except Exception:
            return None
        return job if job.current_epoch >= 1 else None

    return process, log, wait_until(training, timeout=CHILD_TIMEOUT, what="the first epoch")


def run_manifest(cli_env: Settings) -> dict[str, Any]:
    (path,) = Path(cli_env.reports_dir).glob("AAPL/*/run.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_kill_9_of_the_notebook_kernel_fails_its_job_and_its_run(
    cli_env: Settings,
    ctx: AppContext,
    active: ModelRecord,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
) -> None:
    """The runner owns a notebook's job (it writes the report after the kernel exits), so a
    dead kernel is a failed stage the runner records at once, in the job and in run.json."""
    process, log, job = start_notebook_training(cli_env, ctx, tmp_path, "J4")
    children.append(process)
    assert job.owner_pid == process.pid
    (kernel,) = child_pids(process.pid)
    os.kill(kernel, signal.SIGKILL)
    assert process.wait(timeout=CHILD_TIMEOUT) == 2, log.read_text()
    assert "stage train failed" in log.read_text()

    job = jobs.get_job(ctx.db, "J4")
    assert job.status == "failed" and job.error, job
    manifest = run_manifest(cli_env)
    assert manifest["status"] == "failed" and manifest["stages"][0]["html"]
    assert [r.version_id for r in assert_registry_consistent(ctx)] == [active.version_id]
    assert_previous_model_serves(ctx, active)


@pytest.mark.slow
@pytest.mark.parametrize("reconciler", ["cli", "api"])
def test_kill_9_of_the_runner_fails_its_job_and_marks_its_run_failed_next_start(
    cli_env: Settings,
    ctx: AppContext,
    active: ModelRecord,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
    reconciler: str,
) -> None:
    """Issue 14, item 6: the run's run.json said ``running`` forever, with no HTML."""
    process, _log, _job = start_notebook_training(cli_env, ctx, tmp_path, "J5")
    children.append(process)
    kill_9(process)
    assert run_manifest(cli_env)["status"] == "running"  # what the dead process left

    reconcile_with(reconciler, cli_env, ctx, capsys)
    job = jobs.get_job(ctx.db, "J5")
    assert job.status == "failed"
    assert job.error.startswith(f"interrupted: its process {process.pid} on ")
    manifest = run_manifest(cli_env)
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith(f"interrupted: its process {process.pid} on ")
    (stage,) = manifest["stages"]
    run_dir = next(p for p in Path(cli_env.reports_dir).glob("AAPL/*") if p.is_dir())
    assert stage["stage"] == "train" and (run_dir / stage["html"]).is_file()
    assert run_dir.name in (Path(cli_env.reports_dir) / "index.html").read_text()
    assert [r.version_id for r in assert_registry_consistent(ctx)] == [active.version_id]


# --- a corrupted database file --------------------------------------------------------------


def make_real_database(settings: Settings) -> Path:
    """A real database with cached prices, closed (its WAL checkpointed into the file)."""
    ctx = AppContext.create(settings)
    try:
        sync_ticker(ctx, "AAPL")
        sync_ticker(ctx, "MSFT")
    finally:
        ctx.db.dispose()
    path = sqlite_file(settings.database_url)
    assert path is not None and path.stat().st_size > 16 * 4096
    return path


def corrupt(settings: Settings, how: str) -> Path:
    if how == "random bytes":
        path = sqlite_file(settings.database_url)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(1).randbytes(50_000))
        return path
    path = make_real_database(settings)
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    else:  # header intact, every other page garbage: only SQLite itself can tell
        page = int.from_bytes(data[16:18], "big")
        noise = random.Random(2).randbytes(len(data))
        path.write_bytes(data[:page] + noise[page:])
    return path


DB_COMMANDS = [
    ["sync", "AAPL"],
    ["train", "AAPL", "--epochs", "1"],
    ["predict", "AAPL"],
    ["models"],
    ["activate", "AAPL_20260105_120000"],
    ["backtest", "AAPL", "--origins", "5"],
    ["run", "sync", "--ticker", "AAPL"],
    ["serve", "--port", "1"],
]


@pytest.fixture
def sqlite_settings(cli_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """``cli_env`` on a SQLite file even when the suite runs against a database server."""
    from stock_lstm.config import get_settings

    url = f"sqlite:///{tmp_path / 'sqlite' / 'stock_lstm.db'}"
    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", url)
    get_settings.cache_clear()
    return cli_env.model_copy(update={"database_url": url})


@pytest.mark.parametrize("how", ["random bytes", "truncated", "damaged pages"])
def test_a_corrupted_database_is_one_clear_error_everywhere_and_left_untouched(
    sqlite_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    import uvicorn

    path = corrupt(sqlite_settings, how)
    before = path.read_bytes()
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served a broken database"))
    for argv in DB_COMMANDS:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: the database file "), (argv, err)
        assert str(path) in err and "restore it from a backup" in err and "move it aside" in err
    with pytest.raises(DatabaseFileError, match="restore it from a backup"):
        create_app(sqlite_settings)
    assert path.read_bytes() == before
    # SQLite may have opened it (damaged pages are found only by reading them): its sidecar
    # files may exist while this process holds connections, but hold nothing to write back.
    others = {p.name: p.stat().st_size for p in path.parent.iterdir() if p != path}
    assert set(others) <= {f"{path.name}-wal", f"{path.name}-shm"}, others
    assert others.get(f"{path.name}-wal", 0) == 0


def test_a_sound_database_passes_the_header_check(sqlite_settings: Settings) -> None:
    """The check must not cry wolf: a real database, an empty file, no file at all."""
    path = make_real_database(sqlite_settings)
    check_database_file(sqlite_settings.database_url)
    empty = path.with_name("empty.db")
    empty.touch()
    check_database_file(f"sqlite:///{empty}")
    check_database_file(f"sqlite:///{path.with_name('missing.db')}")
    assert main(["models", "--json"]) == 0


# --- a models folder that cannot take files -------------------------------------------------


def test_an_unwritable_models_folder_fails_before_training_and_loses_nothing(
    cli_env: Settings,
    ctx: AppContext,
    active: ModelRecord,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stock_lstm.config import get_settings
    from stock_lstm.models import training

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the models folder's parent should be")
    unwritable = blocker / "models"  # mkdir fails even for root
    monkeypatch.setenv("STOCK_LSTM_MODELS_DIR", str(unwritable))
    get_settings.cache_clear()
    monkeypatch.setattr(training, "train_model", lambda *a, **k: pytest.fail("trained anyway"))
    files_before = sorted(Path(cli_env.models_dir).iterdir())
    prices_before = load_cached_prices(ctx.db, "AAPL")
    capsys.readouterr()

    assert main(["train", "AAPL", "--job-id", "J5", *SHORT]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: cannot write model files to {unwritable}: ")
    assert "STOCK_LSTM_MODELS_DIR" in err
    assert jobs.get_job(ctx.db, "J5").status == "failed"
    assert [r.version_id for r in assert_registry_consistent(ctx)] == [active.version_id]
    assert sorted(Path(cli_env.models_dir).iterdir()) == files_before
    assert load_cached_prices(ctx.db, "AAPL").equals(prices_before)
    assert not unwritable.exists()
    assert_previous_model_serves(ctx, active)
