"""A damaged SQLite file is one clear error that names it, and is never modified.

Two layers, because SQLite itself reports damage only when it reads a bad page:

* ``check_database_file`` reads the file's 100-byte header *before* SQLite opens it (so
  nothing is written, not even a journal): wrong magic (random bytes, some other file), an
  impossible page size, or fewer bytes than the header says the database holds (truncated).
* ``translate_corruption_errors`` turns SQLite's own "file is not a database" and "database
  disk image is malformed", whenever they surface later, into the same ``DatabaseFileError``.

The CLI prints that as one line and exits 2; the API does not start (and answers 503 if a
page goes bad while it runs).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from stock_lstm.errors import DatabaseFileError

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
#: SQLite's primary result codes for a damaged file and for a file that is not a database.
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
_CORRUPTION_MESSAGES = ("file is not a database", "database disk image is malformed")


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL, or None (another database, in-memory, a ``file:`` URI)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def database_file_error(path: Path, reason: str) -> DatabaseFileError:
    """The one-line error: which file, what is wrong, and the two ways out."""
    return DatabaseFileError(
        f"the database file {path} is damaged or is not a stock-lstm database ({reason}); "
        f"it was left untouched: restore it from a backup, or move it aside "
        f"(mv {path} {path}.broken) to start with an empty one"
    )


def header_problem(path: Path) -> str | None:
    """What is wrong with the SQLite header of ``path``, or None if it looks sound."""
    size = path.stat().st_size
    if size == 0:
        return None  # SQLite treats an empty file as a new, empty database
    with path.open("rb") as handle:
        header = handle.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return f"only {size} bytes, shorter than a SQLite header"
    if not header.startswith(SQLITE_MAGIC):
        return "no SQLite header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"impossible page size {page_size}"
    change_counter = int.from_bytes(header[24:28], "big")
    pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    wal = path.with_name(path.name + "-wal")
    recovering = wal.exists() and wal.stat().st_size > 0  # SQLite replays the WAL first
    if pages and valid_for == change_counter and not recovering and size < pages * page_size:
        return f"truncated: {size} bytes of the {pages * page_size} its header announces"
    return None


#: SQLite files this process has connections to (see ``check_database_file``).
_OPEN_IN_THIS_PROCESS: set[Path] = set()


def note_open(url: str) -> None:
    """Record that this process now holds SQLite connections to ``url``'s file."""
    path = sqlite_file(url)
    if path is not None:
        _OPEN_IN_THIS_PROCESS.add(path.resolve())


def check_database_file(url: str) -> None:
    """Raise ``DatabaseFileError`` if ``url`` names an existing SQLite file that is visibly
    not a sound database. Reads only; a missing file is fine (it will be created).

    Skipped for a file this process already has connections to: closing *any* descriptor of
    a file drops every POSIX lock the process holds on it, including the shared lock SQLite's
    WAL connections keep on the database. Another process's last connection then believes it
    is alone, checkpoints and deletes the WAL, and this process's connections read
    "database disk image is malformed" (seen when the runner opened a second ``Database``
    while the API's was open and a notebook kernel exited).
    """
    path = sqlite_file(url)
    if path is None or not path.is_file() or path.resolve() in _OPEN_IN_THIS_PROCESS:
        return
    try:
        problem = header_problem(path)
    except OSError as exc:
        raise database_file_error(path, f"unreadable: {exc.strerror or exc}") from exc
    if problem:
        raise database_file_error(path, problem)


def corruption_reason(exc: BaseException | None) -> str | None:
    """SQLite's words when ``exc`` says the file is damaged or not a database, else None."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    message = str(exc)
    if (code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)) or any(
        text in message.lower() for text in _CORRUPTION_MESSAGES
    ):
        return message
    return None


def translate_corruption_errors(engine: Engine, url: str) -> None:
    """Make ``engine`` raise ``DatabaseFileError`` for damage SQLite finds later on."""
    path = sqlite_file(url)
    if path is None:
        return

    @event.listens_for(engine, "handle_error")
    def _damaged(context: Any) -> None:
        reason = corruption_reason(context.original_exception)
        if reason is not None:
            raise database_file_error(path, reason) from context.original_exception
