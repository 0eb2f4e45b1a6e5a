"""Engine and session construction for any SQLAlchemy URL (SQLite tuned for concurrency)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic_core import from_json
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from stock_lstm.config import mask_url
from stock_lstm.db.integrity import (
    check_database_file,
    note_open,
    translate_corruption_errors,
)
from stock_lstm.db.migrate import upgrade_to_head
from stock_lstm.db.retry import begin_write
from stock_lstm.errors import DatabaseUnavailableError, SettingsError


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


#: Backends whose SQLAlchemy dialect takes a ``json_serializer`` (the ones with JSON columns).
_JSON_BACKENDS = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps_json(value: Any) -> str:
    """JSON column text with NaN and +-Infinity as ``null``, the same on every backend.

    Standard JSON has no such numbers: PostgreSQL rejects them (a diverged epoch's loss would
    fail the progress update there) while SQLite stored them; ``null`` is what both can keep.
    """
    return json.dumps(_finite(value), allow_nan=False)


def loads_json(text: str | bytes) -> Any:
    """A JSON column's value, parsed by pydantic-core (the same values as ``json.loads``).

    Why not ``json.loads``: a version's metrics are about 28 KB of floats, and a page of
    100 versions spent 68 ms of its 100 ms parsing them; pydantic-core's parser takes half
    that, and it is already installed.
    """
    return from_json(text)


def make_engine(url: str, *, busy_timeout_seconds: float = 30.0) -> Engine:
    """Create an engine; SQLite gets WAL mode, a busy timeout and foreign keys."""
    backend = make_url(url).get_backend_name()
    is_sqlite = backend == "sqlite"
    kwargs: dict[str, Any] = {}
    if backend in _JSON_BACKENDS:
        kwargs["json_serializer"] = dumps_json
        kwargs["json_deserializer"] = loads_json
    if is_sqlite:
        _prepare_sqlite_file(url)
        kwargs["connect_args"] = {"timeout": busy_timeout_seconds, "check_same_thread": False}
    else:
        # A server restarted under a running API leaves dead pooled connections: test each
        # one before use, so the first request after the restart works instead of failing.
        kwargs["pool_pre_ping"] = True
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


def translate_connection_errors(engine: Engine, url: str) -> None:
    """Make ``engine`` raise ``DatabaseUnavailableError`` (one line, the URL's password
    masked; a 503 with Retry-After in the API) when a database server cannot be reached."""
    if make_url(url).get_backend_name() == "sqlite":
        return  # a file: damage and locks have their own errors

    @event.listens_for(engine, "handle_error")
    def _unreachable(context: Any) -> None:
        original = context.original_exception
        if context.is_disconnect or isinstance(context.sqlalchemy_exception, OperationalError):
            reason = str(original).strip().splitlines()[0] if str(original).strip() else ""
            raise DatabaseUnavailableError(
                f"the database at {mask_url(url)} cannot be reached ({reason}): start it, or "
                "point STOCK_LSTM_DATABASE_URL at one that runs"
            ) from original


class Database:
    """An engine plus a session factory; opening it migrates the schema to the newest revision.

    A new database is created by the migrations, one from before migrations is stamped and
    upgraded (never dropped), and one already at head costs a single query
    (``stock_lstm.db.migrate``).
    """

    def __init__(self, url: str, *, busy_timeout_seconds: float = 30.0) -> None:
        self.url = url
        check_database_file(url)  # a damaged file: one clear error, before SQLite touches it
        try:
            self.engine = make_engine(url, busy_timeout_seconds=busy_timeout_seconds)
        except (ImportError, NoSuchModuleError) as exc:
            raise SettingsError(
                f"STOCK_LSTM_DATABASE_URL={mask_url(url)!r} needs a database driver that is "
                f"not installed ({exc}): use sqlite:///PATH or postgresql+psycopg://USER:"
                "PASSWORD@HOST:5432/DBNAME (both are installed)"
            ) from None
        note_open(url)
        translate_corruption_errors(self.engine, url)
        translate_connection_errors(self.engine, url)
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
