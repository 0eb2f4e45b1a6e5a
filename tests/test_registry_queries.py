"""The registry's read-only queries used outside ``models/`` (the runner, ``/metrics``, the
reports index), and their callers' behaviour when the database is missing or damaged.

No training and no files: the registry only records an artifact's paths and digests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from stock_lstm.db import Database
from stock_lstm.models.artifacts import SavedArtifacts
from stock_lstm.models.registry import (
    ModelRecord,
    TrainingDataSummary,
    activate_version,
    active_version_ids,
    count_active,
    find_by_report_path,
    register_model,
    set_report_path,
)
from stock_lstm.pipeline import run_index, runner

SUMMARY = TrainingDataSummary(date(2020, 1, 2), date(2021, 1, 4), 250, "0" * 64)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _register(
    db: Database,
    ticker: str,
    version_id: str,
    *,
    activate: bool = True,
    report_path: str | None = None,
) -> ModelRecord:
    files = Path("/nowhere") / version_id
    return register_model(
        db,
        ticker=ticker,
        artifacts=SavedArtifacts(
            version_id, files / "model.pt", files / "scaler.json", "m" * 64, "s" * 64
        ),
        params={"epochs": 1},
        # scores that tell versions apart (their ids end in a digit)
        metrics={"mae": float(version_id[-1]), "persistence": {"mae": 1.0}},
        data=SUMMARY,
        code_version="test",
        activate=activate,
        report_path=report_path,
    )


def test_an_empty_registry_has_no_active_versions_and_no_reports(db: Database) -> None:
    assert count_active(db) == 0
    assert active_version_ids(db) == set()
    assert find_by_report_path(db, "/reports/AAPL/run/02_train.html") is None


def test_active_versions_are_one_per_ticker_and_follow_activation(db: Database) -> None:
    first = _register(db, "AAPL", "AAPL_1")
    second = _register(db, "AAPL", "AAPL_2")
    other = _register(db, "MSFT", "MSFT_1")
    _register(db, "MSFT", "MSFT_2", activate=False)
    assert count_active(db) == 2
    assert active_version_ids(db) == {second.version_id, other.version_id}

    activate_version(db, first.version_id)
    assert count_active(db) == 2
    assert active_version_ids(db) == {first.version_id, other.version_id}


def test_a_version_is_found_by_its_report_path(db: Database) -> None:
    at_registration = _register(db, "AAPL", "AAPL_1", report_path="/r/AAPL/run1/02_train.html")
    linked_later = _register(db, "AAPL", "AAPL_2")
    set_report_path(db, linked_later.version_id, "/r/AAPL/run2/02_train.html")

    found = find_by_report_path(db, "/r/AAPL/run1/02_train.html")
    assert found is not None and found.version_id == at_registration.version_id
    assert found.metrics == at_registration.metrics and not found.is_active  # read now
    later = find_by_report_path(db, "/r/AAPL/run2/02_train.html")
    assert later is not None and later.version_id == linked_later.version_id
    assert find_by_report_path(db, "/r/AAPL/run3/02_train.html") is None


def test_the_runner_reads_the_version_its_report_registered(db: Database) -> None:
    record = _register(db, "AAPL", "AAPL_1", report_path="/r/AAPL/run1/02_train.html")
    version_id, metrics = runner._registered_version(db, "/r/AAPL/run1/02_train.html")
    assert (version_id, metrics) == (record.version_id, record.metrics.to_json())
    assert runner._registered_version(db, "/r/other.html") == (None, None)


def test_the_reports_index_reads_active_ids_or_none_when_the_registry_is_unreadable(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """No database configured, or a damaged file: None (the index leaves the active column
    empty rather than failing a finished run)."""
    record = _register(db, "AAPL", "AAPL_1")
    assert run_index.active_version_ids(database_url) == {record.version_id}
    assert run_index.active_version_ids(None) is None
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not an SQLite database" * 100)
    assert run_index.active_version_ids(f"sqlite:///{damaged}") is None
