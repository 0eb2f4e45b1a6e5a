"""The clock is a side effect: code takes a ``Clock`` so tests can fix the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the default ``Clock``)."""
    return datetime.now(UTC)
