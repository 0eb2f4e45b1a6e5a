"""What differs between SQLite and PostgreSQL is handled in the db layer, so callers never see it.

These run on SQLite in ``make test`` and on PostgreSQL in ``make test-postgres``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stock_lstm.db import Database, ModelRegistry, TrainingJob

STAMP = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def job(job_id: str, **fields: object) -> TrainingJob:
    values: dict[str, object] = {"ticker": "AAPL", "created_at": STAMP, **fields}
    return TrainingJob(job_id=job_id, **values)


def registry_row(version_id: str, *, active: bool) -> ModelRegistry:
    return ModelRegistry(
        version_id=version_id,
        ticker="AAPL",
        created_at=STAMP,
        model_path="m.pt",
        scaler_path="s.joblib",
        model_sha256="0" * 64,
        scaler_sha256="0" * 64,
        params={},
        metrics={},
        first_date=date(2024, 1, 2),
        last_date=date(2025, 1, 2),
        rows=250,
        data_sha256="0" * 64,
        code_version="test",
        is_active=active,
    )


def test_non_finite_floats_in_json_are_stored_as_null_everywhere(db: Database) -> None:
    """PostgreSQL's JSON rejects NaN and Infinity (SQLite took them): a diverged epoch's loss
    must not crash the progress update, and both backends read back the same value."""
    losses = [{"epoch": 1, "train_loss": math.nan, "val_loss": math.inf}]
    with db.transaction() as session:
        session.add(job("nan-job", losses=losses, params={"nested": [1.5, -math.inf]}))
    with db.session() as session:
        row = session.get(TrainingJob, "nan-job")
        assert row is not None
        assert row.losses == [{"epoch": 1, "train_loss": None, "val_loss": None}]
        assert row.params == {"nested": [1.5, None]}


def test_a_diverging_epoch_is_recorded_and_served(db: Database) -> None:
    """The whole path a NaN loss takes: progress update, read back, API response."""
    from stock_lstm.api.schemas import JobResponse
    from stock_lstm.models import jobs

    record = jobs.create_job(db, "AAPL", {"epochs": 3})
    jobs.record_epoch(db, record.job_id, epoch=1, total_epochs=3, train_loss=math.nan, val_loss=0.5)
    response = JobResponse.from_record(jobs.get_job(db, record.job_id))
    assert response.current_epoch == 1
    assert response.losses[0].train_loss is None and response.losses[0].val_loss == 0.5
    assert '"train_loss":null' in response.model_dump_json()


def test_times_come_back_as_the_same_aware_utc_instant(db: Database) -> None:
    """Stored naive UTC on every backend, whatever offset the caller used."""
    east = datetime(2026, 1, 5, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    with db.transaction() as session:
        session.add(job("tz-job", started_at=east))
    with db.session() as session:
        row = session.get(TrainingJob, "tz-job")
        assert row is not None
        assert row.created_at == STAMP and row.created_at.tzinfo is UTC
        assert row.started_at == east and row.started_at.utcoffset() == timedelta(0)


def test_the_partial_unique_index_allows_many_inactive_rows_but_one_active(db: Database) -> None:
    with db.transaction() as session:
        session.add_all([registry_row(f"v{i}", active=False) for i in range(3)])
        session.add(registry_row("v-active", active=True))
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(registry_row("v-second-active", active=True))


def test_concurrent_activations_of_one_ticker_both_succeed_and_leave_one_active(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two registrations race past the deactivation before either inserts its active row.

    SQLite serializes writers at ``BEGIN IMMEDIATE`` so the race cannot happen there; on
    PostgreSQL the loser meets the partial unique index and must retry, not fail.
    """
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite writers are serialized at BEGIN IMMEDIATE: no race to provoke")
    from stock_lstm.models import registry

    with db.transaction() as session:
        session.add(registry_row("v0", active=True))
    barrier = threading.Barrier(2)
    first_calls: list[str] = []
    guard = threading.Lock()
    deactivate = registry._deactivate_ticker

    def racing_deactivate(session: Session, ticker: str) -> None:
        with guard:
            first = len(first_calls) < 2
            first_calls.append(threading.current_thread().name)
        if first:  # both transactions are open before either deactivates
            barrier.wait(timeout=30)
        deactivate(session, ticker)

    monkeypatch.setattr(registry, "_deactivate_ticker", racing_deactivate)
    errors: list[BaseException] = []

    def register(version_id: str) -> None:
        try:
            registry.register_model(
                db,
                ticker="AAPL",
                artifacts=registry.SavedArtifacts(
                    version_id=version_id,
                    model_path=tmp_path / f"{version_id}.pt",
                    scaler_path=tmp_path / f"{version_id}.joblib",
                    model_sha256="0" * 64,
                    scaler_sha256="0" * 64,
                ),
                params={},
                metrics={},
                data=registry.TrainingDataSummary(date(2024, 1, 2), date(2025, 1, 2), 250, "0"),
                code_version="test",
            )
        except BaseException as error:  # reported below, with the thread's name
            errors.append(error)

    threads = [threading.Thread(target=register, args=(v,), name=v) for v in ("v1", "v2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    active = [r.version_id for r in registry.list_models(db, "AAPL") if r.is_active]
    assert len(active) == 1 and active[0] in {"v1", "v2"}
