"""Schema migrations with Alembic: every database is brought to the newest revision on open.

Why a module of its own: ``Database`` must turn *any* SQLAlchemy URL into the current schema
without a separate deployment step, and it must do so safely when

* the database is new (the migrations create it),
* it predates migrations (tables made by ``create_all``, no ``alembic_version``): its columns
  are compared with each revision's schema, the matching revision is stamped and the rest is
  applied, so no row is lost,
* two processes open it for the first time at once: the upgrade runs under a database lock
  (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock) and re-reads the revision inside it.

Opening a database that is already at head costs one query and no Alembic import. The
Alembic configuration is built in code (``script_location`` inside this package), so an
installed wheel migrates the same way a checkout does. New revisions: ``make migration
MSG="what changed"``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import zlib
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, inspect, pool, text
from sqlalchemy.exc import DBAPIError

from stock_lstm.db.models import Base
from stock_lstm.errors import DatabaseSchemaError

if TYPE_CHECKING:  # Alembic is imported only when a migration or a check needs it
    from alembic.config import Config
    from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

#: The Alembic environment (env.py, script.py.mako, versions/) shipped inside the package.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Revision files are named ``0003_add_something.py``: the id is the order.
_FILE_TEMPLATE = "%%(rev)s_%%(slug)s"
#: PostgreSQL advisory lock key for "someone is migrating this database" (any fixed bigint).
_PG_LOCK_KEY = zlib.crc32(b"stock_lstm.db.migrate")
#: Alembic's ``context`` is a module-global proxy: one migration per process at a time.
_PROCESS_LOCK = threading.Lock()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` for this package's migrations, without any ``alembic.ini``.

    ``connection``: env.py migrates over it (the caller owns its transaction and lock);
    ``url``: used by env.py when no connection is given (the ``alembic`` command line).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", _FILE_TEMPLATE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision id; a second head (two unmerged branches) is a packaging bug."""
    heads = _script().get_heads()
    if len(heads) != 1:
        raise DatabaseSchemaError(
            f"the migrations have {len(heads)} heads ({', '.join(heads)}): merge them with "
            "`alembic merge` before releasing"
        )
    return heads[0]


def revisions_oldest_first() -> list[str]:
    """Every revision id from the first to head."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in ``alembic_version``, or None (new or pre-migration database)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _managed_tables() -> frozenset[str]:
    return frozenset(Base.metadata.tables)


def _table_columns(connection: Connection) -> dict[str, frozenset[str]]:
    """Column names of this package's tables present on ``connection`` (others are ignored)."""
    inspector = inspect(connection)
    present = _managed_tables() & set(inspector.get_table_names())
    return {
        name: frozenset(column["name"] for column in inspector.get_columns(name))
        for name in present
    }


@cache
def schema_at(revision: str) -> dict[str, frozenset[str]]:
    """Tables and column names at ``revision``, built by migrating a throw-away SQLite database."""
    from alembic import command

    engine = create_engine("sqlite://", poolclass=pool.StaticPool)
    try:
        with engine.connect() as connection:
            command.upgrade(alembic_config(connection), revision)
            return _table_columns(connection)
    finally:
        engine.dispose()


def _pre_migration_revision(connection: Connection) -> str:
    """The revision whose schema a database without ``alembic_version`` already has."""
    found = _table_columns(connection)
    for revision in reversed(revisions_oldest_first()):
        if schema_at(revision) == found:
            return revision
    tables = ", ".join(f"{name}({', '.join(sorted(cols))})" for name, cols in sorted(found.items()))
    raise DatabaseSchemaError(
        f"the database has stock_lstm tables but no alembic_version, and they match no known "
        f"schema revision: {tables}. Back it up, then point STOCK_LSTM_DATABASE_URL at a new "
        "database (or remove these tables) so the migrations can create the schema"
    )


def _lock(connection: Connection) -> None:
    """Begin the migration transaction holding a lock other migrating processes wait for."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        # pysqlite leaves DDL outside transactions unless told: take the write lock up front,
        # so a second process blocks (busy timeout) until the whole upgrade has committed.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _migrate(connection: Connection, head: str) -> None:
    from alembic import command

    current = current_revision(connection)
    if current == head:
        return
    config = alembic_config(connection)
    if current is None and _table_columns(connection):
        stamp = _pre_migration_revision(connection)
        logger.info("database predates migrations: its schema is revision %s, stamping it", stamp)
        command.stamp(config, stamp)
        current = stamp
    logger.info("upgrading the database schema from %s to %s", current or "empty", head)
    command.upgrade(config, "head")


@cache
def _newest_revision_file() -> str | None:
    """The highest numbered revision file's id (``0002`` for ``0002_training_job_owner.py``).

    By this package's naming rule that is the head; anything unusual (no numbered file, a
    database stamped elsewhere) only means the full check with Alembic runs instead.
    """
    numbers = [
        path.name.split("_", 1)[0]
        for path in (MIGRATIONS_DIR / "versions").glob("*.py")
        if path.name.split("_", 1)[0].isdigit()
    ]
    return max(numbers, default=None)


def _stamped_revision(engine: Engine) -> str | None:
    """``alembic_version``'s revision by plain SQL; None when there is no single stamp."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:  # no table yet: a new or pre-migration database
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def upgrade_to_head(engine: Engine) -> None:
    """Bring ``engine``'s database to the newest revision (a no-op query when it is there).

    Safe against a concurrent first open: the upgrade re-reads the revision under a lock. On
    backends without a lock here, a race that fails is retried once by re-reading the revision.
    """
    if _stamped_revision(engine) == _newest_revision_file():
        return  # at head: Alembic (a tenth of a second to import) is not needed
    head = head_revision()
    with engine.connect() as connection:
        if current_revision(connection) == head:
            return
    with _PROCESS_LOCK:
        try:
            with engine.connect() as connection:
                _lock(connection)
                _migrate(connection, head)
                connection.commit()
        except DBAPIError:
            with engine.connect() as connection:
                if current_revision(connection) == head:
                    logger.info("another process migrated the database first")
                    return
            raise


def schema_differences(engine: Engine) -> list[Any]:
    """Alembic's autogenerate diff between the models and ``engine``'s database (empty = same).

    A model change without a migration shows up here (the test suite asserts it is empty).
    """
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def new_revision(message: str) -> Path:
    """Autogenerate the next revision from the models' difference to the current head.

    The diff is taken against a temporary SQLite database migrated to head, so no server is
    needed; review the file (SQLite cannot see every PostgreSQL-only detail).
    """
    if not message.strip():
        raise DatabaseSchemaError('a revision needs a message: make migration MSG="what changed"')
    from alembic import command

    numbers = [int(rev) for rev in revisions_oldest_first() if rev.isdigit()]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'head.db'}", poolclass=pool.NullPool)
        try:
            upgrade_to_head(engine)
            if not schema_differences(engine):
                raise DatabaseSchemaError(
                    "the models match the newest migration: nothing to generate"
                )
            with engine.connect() as connection:
                script = command.revision(
                    alembic_config(connection), message=message, autogenerate=True, rev_id=rev_id
                )
        finally:
            engine.dispose()
    _script.cache_clear()
    scripts = script if isinstance(script, list) else [script]
    return Path(scripts[0].path) if scripts and scripts[0] is not None else MIGRATIONS_DIR


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stock_lstm.db revision -m MSG | check`` (used by ``make migration``)."""
    parser = argparse.ArgumentParser(prog="python -m stock_lstm.db", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="autogenerate the next revision")
    revision.add_argument("-m", "--message", required=True)
    commands.add_parser("check", help="exit 1 when the models differ from the migrations")
    args = parser.parse_args(argv)
    try:
        if args.command == "revision":
            print(new_revision(args.message))
            return 0
        engine = create_engine("sqlite://", poolclass=pool.StaticPool)
        upgrade_to_head(engine)
        differences = schema_differences(engine)
        for difference in differences:
            print(difference)
        return 1 if differences else 0
    except DatabaseSchemaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
