"""Price frames kept in memory and reused while the database still holds the same rows.

The cache rule (:mod:`stock_lstm.data.cache`) decides *whether* the cached rows may be used;
this memo only saves reading them back through SQL when they have not changed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from stock_lstm.errors import InvalidParameterError
from stock_lstm.lru import LruCache

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CacheSummary:
    """What identifies the rows cached for one ticker (within a date range, if given).

    Compared by :class:`PriceFrames` to tell whether a frame loaded earlier still describes
    the rows held (``data.cache`` makes them)."""

    rows: int
    first_date: date | None
    last_date: date | None
    updated_at: datetime | None
    #: Sums of the close and volume columns: with the rest, what identifies the rows held.
    checksum: tuple[float | None, float | None] = (None, None)


class PriceFrames:
    """Price frames loaded recently, reused while the database still holds the same rows.

    Why: a forecast needs a ticker's whole cached history (thousands of rows), and reading it
    back through SQL costs many times the forecast itself. The cache rule runs on every call;
    its summary query (row count, first and last day, oldest ``updated_at``, sums of close
    and volume) identifies the rows held, so an unchanged summary means an unchanged frame.
    Every write stamps a new ``updated_at`` on all of a ticker's rows, and the sums catch a
    rewrite under a frozen (test) clock. Thread-safe; callers get their own copy.

    With ``recheck_seconds`` > 0 (the API's setting), a summary checked less than that long
    ago is trusted without asking the database again, as long as this process has not written
    prices through the same :class:`~stock_lstm.db.Database` since (the caller passes
    :func:`~stock_lstm.data.cache.write_generation`). The summary query was a third of a
    served forecast's time under load; what it costs is that a write by *another* process
    (a CLI sync, a training kernel) is seen up to ``recheck_seconds`` late.
    Freshness itself is always decided on the current clock.
    """

    def __init__(self, max_size: int = 64, *, recheck_seconds: float = 0.0) -> None:
        if not recheck_seconds >= 0:
            raise InvalidParameterError(
                f"recheck_seconds must be 0 or more, got {recheck_seconds!r}"
            )
        self.max_size = max_size
        self.recheck_seconds = recheck_seconds
        self._items: LruCache[tuple[Any, ...], _Frame] = LruCache(max_size)

    def get(self, key: tuple[Any, ...], summary: CacheSummary) -> pd.DataFrame | None:
        """A copy of the frame stored under ``key`` if it was loaded under ``summary``."""
        item = self._items.get(key)
        if item is None or item.summary != summary:
            return None
        return item.frame.copy()  # kept frames are never modified: no lock needed to copy

    def recent(
        self, key: tuple[Any, ...], generation: int
    ) -> tuple[CacheSummary, pd.DataFrame] | None:
        """The summary and a copy of the frame under ``key`` if its summary was read less
        than ``recheck_seconds`` ago and no write of this process came in between."""
        if self.recheck_seconds <= 0:
            return None
        item = self._items.get(key)
        if (
            item is None
            or item.generation != generation
            or time.monotonic() - item.checked_at >= self.recheck_seconds
        ):
            return None
        return item.summary, item.frame.copy()

    def put(
        self,
        key: tuple[Any, ...],
        summary: CacheSummary,
        frame: pd.DataFrame,
        *,
        generation: int = -1,
        checked_at: float = -math.inf,
    ) -> None:
        """Keep ``frame`` as loaded under ``summary``, read at ``checked_at`` (monotonic
        clock, taken *before* the query) when this process's write generation was
        ``generation``."""
        self._items.put(key, _Frame(summary, frame.copy(), generation, checked_at))

    def touch(
        self, key: tuple[Any, ...], summary: CacheSummary, generation: int, checked_at: float
    ) -> None:
        """Record that the frame under ``key`` was found unchanged by a summary query (one
        check-and-replace under the cache's lock: a newer frame put meanwhile is kept)."""

        def refreshed(item: _Frame) -> _Frame | None:
            if item.summary != summary:
                return None
            return _Frame(summary, item.frame, generation, checked_at)

        self._items.update(key, refreshed)

    def forget(self, key: tuple[Any, ...]) -> None:
        self._items.pop(key)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class _Frame:
    """A kept frame, the summary it was loaded under, and when that summary was last read."""

    summary: CacheSummary
    frame: pd.DataFrame
    generation: int
    checked_at: float
