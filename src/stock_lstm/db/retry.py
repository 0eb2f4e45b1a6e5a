"""Write transactions on SQLite that wait for each other instead of failing "database is locked".

Several processes share one SQLite file (two trainings, a sync, the API). SQLite allows one
writer at a time; the others wait up to the busy timeout. Two things make that wait reliable:

* A write transaction takes the write lock at its *start* (``BEGIN IMMEDIATE``), not at its
  first write. A transaction that read first and then tried to write could otherwise fail at
  once, busy timeout or not, when another process committed in between; and the only
  statement that can now meet the lock is the ``BEGIN`` itself, before anything has run, so
  retrying it is always safe.
* If the lock is still held when the busy timeout expires (a very long writer, or a small
  ``STOCK_LSTM_SQLITE_BUSY_TIMEOUT_SECONDS``), the ``BEGIN`` is retried a few times with a
  growing pause (``BACKOFF_SECONDS``), then the caller gets one clear ``DatabaseBusyError``
  instead of a traceback.

Other databases (PostgreSQL) have row locks and need none of this: the helper does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from stock_lstm.errors import DatabaseBusyError

log = logging.getLogger(__name__)

#: Pauses (seconds) between attempts to take the write lock, each after a busy timeout expired:
#: about 4 s on top of the timeouts, long enough for any ordinary write to finish.
BACKOFF_SECONDS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_LOCKED_MESSAGES = ("database is locked", "database table is locked")


def is_locked_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "another connection holds the lock" error."""
    message = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, OperationalError) and any(text in message for text in _LOCKED_MESSAGES)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def begin_write(
    session: Session,
    *,
    backoff: tuple[float, ...] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> None:
    """Start ``session``'s transaction holding SQLite's write lock (no-op on other databases).

    Call first thing inside ``session.begin()``. Raises ``DatabaseBusyError`` when the lock
    stays taken through every busy timeout and pause (``backoff``, default
    ``BACKOFF_SECONDS``).
    """
    backoff = BACKOFF_SECONDS if backoff is None else backoff
    sleep = sleep or _sleep
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    for attempt in range(len(backoff) + 1):
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if not is_locked_error(exc):
                raise
            if attempt == len(backoff):
                url = connection.engine.url.render_as_string(hide_password=True)
                raise DatabaseBusyError(
                    f"the database {url} stayed locked by another process through "
                    f"{attempt + 1} busy timeouts: retry when the other stock-lstm command "
                    "has finished, or raise STOCK_LSTM_SQLITE_BUSY_TIMEOUT_SECONDS"
                ) from exc
            log.info("database locked; retrying in %.1f s", backoff[attempt])
            sleep(backoff[attempt])
