"""Keyset pagination of newest-first listings (the registry's versions, training jobs).

Why keyset, not ``OFFSET``: a nightly retrain of hundreds of tickers adds rows while someone
pages through yesterday's; an offset then shows a row twice or skips one, and its cost grows
with the page number. The cursor is the last row's id: the next page is every row strictly
older than it in ``(created_at, id)`` order, which an index on those two columns answers
directly (migration 0004).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from stock_lstm.db.session import Database
from stock_lstm.errors import InvalidParameterError
from stock_lstm.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "newest_first_page"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Page(Generic[_T]):
    """One page of a listing: its items, how many rows match in all, and the cursor of the
    next page (``None`` on the last one)."""

    items: list[_T]
    total: int
    next_cursor: str | None


def newest_first_page(
    db: Database,
    query: Select[Any],
    *,
    model: Any,
    key: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
    convert: Callable[[Any], _T],
) -> Page[_T]:
    """``query`` (filtered, unordered rows of ``model``) paged newest first by
    ``(model.created_at, key)``; ``cursor`` is the ``key`` of the previous page's last row."""
    if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidParameterError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit!r}")
    created = model.created_at
    with db.session() as session:
        total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
        if cursor is not None:
            last = session.get(model, cursor)
            if last is None:
                raise InvalidParameterError(
                    f"cursor {cursor!r} is not a row of this listing: use the next_cursor "
                    "of the previous page, or none for the first page"
                )
            query = query.where(
                or_(created < last.created_at, and_(created == last.created_at, key < cursor))
            )
        rows: Sequence[Any] = session.scalars(
            query.order_by(created.desc(), key.desc()).limit(limit + 1)
        ).all()
        items = [convert(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, total, str(getattr(rows[limit - 1], key.key)) if more else None)
