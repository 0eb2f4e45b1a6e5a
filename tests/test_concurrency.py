"""Three processes against one SQLite file at the same moment: two trainings of different
tickers and a sync of a third. All must succeed, nothing may be lost, and no process may
see "database is locked" (the writers wait for each other instead).

The children import everything first and then wait for a start file, so their database
work really overlaps; epochs are few so the whole test takes seconds, not minutes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import server_env
from sqlalchemy import func, select

from stock_lstm.config import Settings
from stock_lstm.db import Database, PriceCache, retry
from stock_lstm.errors import DatabaseBusyError
from stock_lstm.models import jobs
from stock_lstm.models.registry import list_models

DRIVER = Path(__file__).with_name("fault_driver.py")
TINY = [
    *("--epochs", "5", "--patience", "0", "--sequence-length", "10", "--hidden-size", "8"),
    *("--num-layers", "1", "--batch-size", "64", "--no-progress", "--json"),
]
CHILD_TIMEOUT = 180.0


@pytest.mark.parametrize("database", ["new", "existing, 1 ms busy timeout"])
def test_two_trainings_and_a_sync_at_once_on_one_sqlite_file(
    settings: Settings, tmp_path: Path, database: str
) -> None:
    """ "new": the three also race to create the schema. "existing": only the data writes
    race, and each busy wait gives up after 1 ms, so waiting is left to the retries."""
    url = f"sqlite:///{tmp_path / 'shared' / 'stock_lstm.db'}"
    shared = settings.model_copy(update={"database_url": url})
    extra_env: dict[str, str] = {}
    if database != "new":
        Database(url).dispose()
        extra_env["STOCK_LSTM_SQLITE_BUSY_TIMEOUT_SECONDS"] = "0.001"
    go = tmp_path / "go"
    commands = {
        "train-AAPL": ["train", "AAPL", "--job-id", "job-aapl", *TINY],
        "train-MSFT": ["train", "MSFT", "--job-id", "job-msft", *TINY],
        "sync-TEST": ["sync", "TEST", "--json"],
    }
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, argv in commands.items():
            processes[name] = subprocess.Popen(
                [sys.executable, str(DRIVER), "--go", str(go), "--", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=server_env(shared, **extra_env),
                cwd=tmp_path,
            )
        go.touch()
        results = {
            name: process.communicate(timeout=CHILD_TIMEOUT) for name, process in processes.items()
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    for name, (_out, err) in results.items():
        assert processes[name].returncode == 0, f"{name} failed:\n{err}"
        assert "database is locked" not in err.lower(), f"{name}:\n{err}"
        assert "Traceback" not in err, f"{name}:\n{err}"

    db = Database(url)
    try:
        with db.session() as session:
            rows = dict(
                session.execute(
                    select(PriceCache.ticker, func.count()).group_by(PriceCache.ticker)
                ).all()
            )
        assert rows == {"AAPL": 600, "MSFT": 600, "TEST": 600}
        models = list_models(db)
        assert sorted((m.ticker, m.is_active) for m in models) == [
            ("AAPL", True),
            ("MSFT", True),
        ]
        for job_id, ticker in (("job-aapl", "AAPL"), ("job-msft", "MSFT")):
            job = jobs.get_job(db, job_id)
            assert job.status == "completed" and job.current_epoch == 5
            assert job.version_id == next(m.version_id for m in models if m.ticker == ticker)
    finally:
        db.dispose()


# --- the write lock, deterministically ------------------------------------------------------


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[tuple[Database, sqlite3.Connection]]:
    """A database whose write lock another connection holds, with a 10 ms busy timeout."""
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}", busy_timeout_seconds=0.01)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield db, holder
    holder.close()
    db.dispose()


def test_a_writer_retries_until_the_other_writer_is_done(
    locked_db: tuple[Database, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, holder = locked_db
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            holder.execute("COMMIT")  # the other writer finishes during our second pause

    monkeypatch.setattr(retry, "_sleep", pause)
    jobs.create_job(db, "AAPL", {"epochs": 1}, job_id="j1")
    assert pauses == list(retry.BACKOFF_SECONDS[:2])
    assert jobs.get_job(db, "j1").status == "queued"


def test_a_lock_that_never_frees_is_one_clear_error_and_writes_nothing(
    locked_db: tuple[Database, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _holder = locked_db
    pauses: list[float] = []
    monkeypatch.setattr(retry, "_sleep", pauses.append)
    with pytest.raises(DatabaseBusyError, match=r"locked\.db stayed locked by another process"):
        jobs.create_job(db, "AAPL", {"epochs": 1}, job_id="j1")
    assert pauses == list(retry.BACKOFF_SECONDS)
    assert jobs.list_jobs(db) == []


def test_a_write_transaction_holds_the_lock_from_its_first_statement(tmp_path: Path) -> None:
    """Read-then-write is atomic: nobody can write between our read and our write."""
    path = tmp_path / "atomic.db"
    db = Database(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with db.transaction() as session:
            session.execute(select(func.count()).select_from(PriceCache))  # a read only
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("DELETE FROM price_cache")
        other.execute("DELETE FROM price_cache")  # free again once we committed
    finally:
        other.close()
        db.dispose()
