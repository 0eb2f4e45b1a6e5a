"""Engine and session construction for any SQLAlchemy URL (SQLite tuned for concurrency)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from stock_lstm.db.integrity import check_database_file, translate_corruption_errors
from stock_lstm.db.migrate import upgrade_to_head
from stock_lstm.db.retry import begin_write


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, *, busy_timeout_seconds: float = 30.0) -> Engine:
    """Create an engine; SQLite gets WAL mode, a busy timeout and foreign keys."""
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if is_sqlite:
        _prepare_sqlite_file(url)
        kwargs["connect_args"] = {"timeout": busy_timeout_seconds, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


class Database:
    """An engine plus a session factory; opening it migrates the schema to the newest revision.

    A new database is created by the migrations, one from before migrations is stamped and
    upgraded (never dropped), and one already at head costs a single query
    (``stock_lstm.db.migrate``).
    """

    def __init__(self, url: str, *, busy_timeout_seconds: float = 30.0) -> None:
        self.url = url
        check_database_file(url)  # a damaged file: one clear error, before SQLite touches it
        self.engine = make_engine(url, busy_timeout_seconds=busy_timeout_seconds)
        translate_corruption_errors(self.engine, url)
        upgrade_to_head(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        """A new session: use ``with db.session() as s, s.begin(): ...`` for atomic writes."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception. On SQLite it holds
        the write lock from its start, waiting for other writers (``db.retry``)."""
        with self._sessions() as session, session.begin():
            begin_write(session)
            yield session

    def dispose(self) -> None:
        """Close pooled connections (tests and short-lived processes)."""
        self.engine.dispose()
