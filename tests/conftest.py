"""Shared fixtures: a temporary database, models folder and a generated CSV price folder.

Nothing here touches the network or the checkout: every test gets its own folders. With
``STOCK_LSTM_TEST_DATABASE_URL`` set to a PostgreSQL URL (``make test-postgres``), every
test that uses a database gets a fresh schema in that database instead of a SQLite file;
those tests are marked ``db`` automatically (``pytest -m db`` runs just them).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from stock_lstm.config import Settings
from stock_lstm.data.synthetic import write_fixture_folder
from stock_lstm.workflows import AppContext

FIXTURE_TICKERS = ("AAPL", "MSFT", "TEST")
#: A PostgreSQL URL whose database the tests may fill with throw-away schemas, one per test.
TEST_DATABASE_URL_ENV = "STOCK_LSTM_TEST_DATABASE_URL"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``database_url`` fixture (directly or not) with ``db``."""
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@contextmanager
def postgres_schema(server_url: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema; dropped afterwards.

    A schema per test (via ``search_path``) isolates tests like a database per test would,
    at a fraction of the cost of ``CREATE DATABASE``. The test's connections carry the
    schema's name as ``application_name``, so leftovers (a killed server subprocess) can be
    terminated before the drop.
    """
    server = make_url(server_url)
    if server.get_backend_name() != "postgresql":
        raise pytest.UsageError(f"{TEST_DATABASE_URL_ENV} must be a postgresql URL")
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE SCHEMA {name}"))
        options = {"options": f"-csearch_path={name}", "application_name": name}
        yield server.update_query_dict(options).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            )
            connection.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database: a temporary SQLite file, or a schema on the test server if set."""
    server_url = os.environ.get(TEST_DATABASE_URL_ENV)
    if not server_url:
        yield f"sqlite:///{tmp_path / 'db' / 'stock_lstm.db'}"
        return
    with postgres_schema(server_url) as url:
        yield url


class FixedClock:
    """An injectable clock that only moves when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now = self.now + timedelta(**delta)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(scope="session")
def price_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``csv:DIR`` folder of deterministic synthetic tickers (600 business days each)."""
    return write_fixture_folder(tmp_path_factory.mktemp("prices"), FIXTURE_TICKERS)


@pytest.fixture
def settings(tmp_path: Path, price_dir: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        source=f"csv:{price_dir}",
        models_dir=tmp_path / "models",
        reports_dir=tmp_path / "reports",
        torch_threads=1,
    )


@pytest.fixture
def ctx(settings: Settings, clock: FixedClock) -> Iterator[AppContext]:
    context = AppContext.create(settings, clock=clock)
    yield context
    context.db.dispose()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Point the CLI (which reads the environment) at the temporary folders."""
    from stock_lstm.config import get_settings

    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("STOCK_LSTM_SOURCE", settings.source)
    monkeypatch.setenv("STOCK_LSTM_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("STOCK_LSTM_REPORTS_DIR", str(settings.reports_dir))
    monkeypatch.setenv("STOCK_LSTM_TORCH_THREADS", "1")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()
