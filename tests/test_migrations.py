"""Schema migrations: new databases are built by Alembic, old ones upgraded (never dropped),
the models never drift from the migrations, and concurrent first opens do not crash."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic import command as alembic_command
from sqlalchemy import Engine, insert, inspect, select, text

from stock_lstm.db import Base, Database, PriceCache, TrainingJob, migrate
from stock_lstm.db.session import make_engine
from stock_lstm.errors import DatabaseSchemaError

ROOT = Path(__file__).resolve().parents[1]
#: The columns commit be208f0 added to training_jobs (migration 0002).
OWNER_COLUMNS = ("owner_host", "owner_pid")
STAMP = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A plain engine on the test database, for building what older code left behind."""
    raw = make_engine(database_url)
    yield raw
    raw.dispose()


def columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


OLD_TABLES = ("price_cache", "training_jobs", "model_registry")


def create_pre_migration_schema(engine: Engine) -> None:
    """What ``Base.metadata.create_all`` built before migrations: no owner columns, and
    none of the tables added since (calibration_states)."""
    Base.metadata.create_all(
        engine,
        tables=[table for name, table in Base.metadata.tables.items() if name in OLD_TABLES],
    )
    with engine.begin() as connection:
        for column in OWNER_COLUMNS:
            connection.execute(text(f"ALTER TABLE training_jobs DROP COLUMN {column}"))


def insert_old_rows(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(PriceCache.__table__).values(
                ticker="AAPL",
                date=date(2026, 1, 2),
                open=1.0,
                high=2.0,
                low=0.5,
                close=1.5,
                adj_close=None,
                volume=100.0,
                updated_at=STAMP,
            )
        )
        connection.execute(
            insert(TrainingJob.__table__).values(
                job_id="old-job",
                ticker="AAPL",
                status="completed",
                progress=1.0,
                current_epoch=2,
                total_epochs=2,
                losses=[],
                params={"epochs": 2},
                created_at=STAMP,
            )
        )


def test_a_new_database_is_built_by_the_migrations_and_matches_the_models(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        with db.engine.connect() as connection:
            assert migrate.current_revision(connection) == migrate.head_revision()
        assert migrate.schema_differences(db.engine) == []
    finally:
        db.dispose()


def test_the_drift_check_sees_a_model_change_without_a_migration(engine: Engine) -> None:
    """A database at the first revision lacks the owner columns: the check must say so."""
    with engine.connect() as connection:
        alembic_command.upgrade(migrate.alembic_config(connection), "0001")
        connection.commit()
    added = {
        diff[3].name
        for diff in migrate.schema_differences(engine)
        if isinstance(diff, tuple) and diff[0] == "add_column"
    }
    assert added == set(OWNER_COLUMNS)


def test_a_pre_migration_database_is_upgraded_and_keeps_its_rows(
    engine: Engine, database_url: str
) -> None:
    create_pre_migration_schema(engine)
    insert_old_rows(engine)
    assert not set(OWNER_COLUMNS) & columns(engine, "training_jobs")

    db = Database(database_url)
    try:
        with db.engine.connect() as connection:
            assert migrate.current_revision(connection) == migrate.head_revision()
        assert set(OWNER_COLUMNS) <= columns(db.engine, "training_jobs")
        with db.transaction() as session:
            job = session.get(TrainingJob, "old-job")
            assert job is not None and job.params == {"epochs": 2}
            assert (job.owner_host, job.owner_pid) == (None, None)
            job.owner_host, job.owner_pid = "host", 42
        with db.session() as session:
            assert session.scalars(select(PriceCache.close)).all() == [1.5]
            assert session.get(TrainingJob, "old-job").owner_pid == 42
        assert migrate.schema_differences(db.engine) == []
    finally:
        db.dispose()


def test_a_database_made_by_create_all_at_head_is_only_stamped(
    engine: Engine, database_url: str
) -> None:
    """Databases created between the owner columns and Alembic already have everything."""
    Base.metadata.create_all(engine)
    insert_old_rows(engine)
    db = Database(database_url)
    try:
        with db.engine.connect() as connection:
            assert migrate.current_revision(connection) == migrate.head_revision()
        with db.session() as session:
            assert session.get(TrainingJob, "old-job") is not None
    finally:
        db.dispose()


def test_an_unknown_schema_is_refused_and_left_alone(engine: Engine, database_url: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE price_cache (id INTEGER PRIMARY KEY, other TEXT)"))
        connection.execute(text("INSERT INTO price_cache (id, other) VALUES (1, 'keep me')"))
    with pytest.raises(DatabaseSchemaError, match=r"match no known schema revision"):
        Database(database_url).dispose()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT other FROM price_cache")).scalar() == "keep me"
        assert migrate.current_revision(connection) is None


def test_reopening_a_database_at_head_runs_no_migration(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Database(database_url).dispose()

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a database at head must not be migrated again")

    monkeypatch.setattr(alembic_command, "upgrade", refuse)
    monkeypatch.setattr(alembic_command, "stamp", refuse)
    Database(database_url).dispose()


CHILD = """
import sys
from stock_lstm.db import Database
print("ready", flush=True)
sys.stdin.readline()
Database(sys.argv[1]).dispose()
"""


def test_concurrent_first_opens_all_succeed(database_url: str) -> None:
    """Several processes open a new database at once (released together by the parent)."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert [row[0] for row in versions] == [migrate.head_revision()]
    finally:
        engine.dispose()


def test_new_revision_needs_changes_and_a_message() -> None:
    with pytest.raises(DatabaseSchemaError, match="needs a message"):
        migrate.new_revision("  ")
    with pytest.raises(DatabaseSchemaError, match="nothing to generate"):
        migrate.new_revision("no change")
    assert migrate.main(["check"]) == 0


def test_the_migrations_ship_with_the_package() -> None:
    """pyproject's package-data globs cover every file of the Alembic environment."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["stock_lstm"]
    package = ROOT / "src" / "stock_lstm"
    files = [
        path.relative_to(package).as_posix()
        for path in migrate.MIGRATIONS_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert {"db/migrations/env.py", "db/migrations/script.py.mako"} <= set(files)
    assert any(name.startswith("db/migrations/versions/0001_") for name in files)
    missing = [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert missing == []


def test_the_fast_head_check_names_alembics_head() -> None:
    """Opening a database at head skips Alembic when the newest numbered file is stamped:
    that shortcut is only right while the numbering rule names the real head."""
    assert migrate._newest_revision_file() == migrate.head_revision()


def test_opening_a_database_at_head_does_not_import_alembic(database_url: str) -> None:
    Database(database_url).dispose()  # created and migrated: at head now
    code = (
        "import sys; from stock_lstm.db import Database; "
        f"Database({database_url!r}).dispose(); print('alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
