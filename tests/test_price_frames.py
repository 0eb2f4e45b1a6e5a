"""Reused price frames (``PriceFrames``): never a stale frame, whatever changed the rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import event
from yfinance_fakes import YFINANCE_WARNING_FILTER, FakeClock, FakeSource

from stock_lstm.data import cache as cache_module
from stock_lstm.data.cache import PriceStore, load_cached_prices
from stock_lstm.data.price_frames import PriceFrames
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.db import Database
from stock_lstm.errors import InvalidParameterError

pytestmark = pytest.mark.filterwarnings(YFINANCE_WARNING_FILTER)

HISTORY = synthetic_prices("AAPL", rows=80, start="2024-01-02")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def store(
    db: Database, source: FakeSource, clock: FakeClock, frames: PriceFrames | None = None
) -> PriceStore:
    return PriceStore(db, source, expiry_hours=24.0, clock=clock, frames=frames)


def read(
    db: Database, source: FakeSource, clock: FakeClock, frames: PriceFrames, **options: Any
) -> pd.DataFrame:
    prices, _sync = store(db, source, clock, frames).get("AAPL", **options)
    return prices


def test_an_unchanged_cache_is_served_from_memory_as_a_copy(db: Database) -> None:
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames()
    first = read(db, source, clock, frames)  # downloads: nothing is kept yet
    assert len(frames) == 0
    second = read(db, source, clock, frames)
    assert len(frames) == 1
    second.iloc[0, 0] = -1.0  # the caller's copy, not the kept frame
    third = read(db, source, clock, frames)
    pd.testing.assert_frame_equal(third, first)
    pd.testing.assert_frame_equal(third, load_cached_prices(db, "AAPL"))


def test_a_rewrite_under_a_frozen_clock_is_seen(db: Database) -> None:
    """Same rows, same days, same ``updated_at``: only the prices differ (a re-adjustment)."""
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames()
    read(db, source, clock, frames)
    read(db, source, clock, frames)
    source.raw = HISTORY.assign(**{c: HISTORY[c] * 0.5 for c in ("Open", "High", "Low", "Close")})
    read(db, source, clock, frames, force=True)
    after = read(db, source, clock, frames)
    pd.testing.assert_frame_equal(after, load_cached_prices(db, "AAPL"))
    assert after["close"].iloc[-1] == pytest.approx(HISTORY["Close"].iloc[-1] * 0.5)


def test_rows_deleted_behind_its_back_are_not_served(db: Database) -> None:
    source, clock, frames = FakeSource(HISTORY.iloc[:60]), FakeClock(), PriceFrames()
    read(db, source, clock, frames)
    read(db, source, clock, frames)
    store(db, source, clock).delete("AAPL")
    source.raw = HISTORY
    assert len(read(db, source, clock, frames)) == len(HISTORY)


def test_each_date_range_is_kept_apart(db: Database) -> None:
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames()
    read(db, source, clock, frames)
    start = HISTORY.index[50].date()
    whole = read(db, source, clock, frames)
    tail = read(db, source, clock, frames, start=start)
    assert len(whole) == len(HISTORY)
    assert tail.index[0].date() == start
    assert len(read(db, source, clock, frames)) == len(HISTORY)


# --- the recheck window (``recheck_seconds``, the API's ``price_recheck_seconds``) ---------


class StatementCounter:
    """Counts SQL statements run through ``db`` (a summary query is one)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def test_a_recent_summary_is_trusted_without_asking_the_database(db: Database) -> None:
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames(recheck_seconds=3600)
    read(db, source, clock, frames)  # download
    first = read(db, source, clock, frames)  # summary read, frame kept
    statements = StatementCounter(db)
    again = read(db, source, clock, frames)
    assert statements.count == 0
    pd.testing.assert_frame_equal(again, first)
    assert len(source.calls) == 1


def test_without_a_window_every_read_checks_the_database(db: Database) -> None:
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames()
    read(db, source, clock, frames)
    read(db, source, clock, frames)
    statements = StatementCounter(db)
    read(db, source, clock, frames)
    assert statements.count >= 1


def test_writes_of_this_process_are_seen_inside_the_window(db: Database) -> None:
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames(recheck_seconds=3600)
    read(db, source, clock, frames)
    read(db, source, clock, frames)
    halved = HISTORY.assign(**{c: HISTORY[c] * 0.5 for c in ("Open", "High", "Low", "Close")})
    source.raw = halved
    store(db, source, clock).sync("AAPL", force=True)
    after = read(db, source, clock, frames)
    assert after["close"].iloc[-1] == pytest.approx(HISTORY["Close"].iloc[-1] * 0.5)
    store(db, source, clock).delete("AAPL")
    source.raw = HISTORY.iloc[:60]
    assert len(read(db, source, clock, frames)) == 60  # downloaded again, not the kept frame


def test_another_process_is_seen_once_the_window_has_passed(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames(recheck_seconds=5)
    read(db, source, clock, frames)
    read(db, source, clock, frames)
    other = Database(database_url)  # another process's connection: its writes are not counted
    try:
        halved = HISTORY.assign(**{c: HISTORY[c] * 0.5 for c in ("Open", "High", "Low", "Close")})
        store(other, FakeSource(halved), clock).sync("AAPL", force=True)
    finally:
        other.dispose()
    stale = read(db, source, clock, frames)  # inside the window: the documented delay
    assert stale["close"].iloc[-1] == pytest.approx(HISTORY["Close"].iloc[-1])
    later = time.monotonic() + 6
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: later)
    fresh = read(db, source, clock, frames)
    assert fresh["close"].iloc[-1] == pytest.approx(HISTORY["Close"].iloc[-1] * 0.5)


def test_expiry_is_decided_on_the_current_clock_inside_the_window(db: Database) -> None:
    source, clock, frames = FakeSource(HISTORY), FakeClock(), PriceFrames(recheck_seconds=3600)
    read(db, source, clock, frames)
    read(db, source, clock, frames)
    clock.advance(hours=25)
    _prices, result = store(db, source, clock, frames).get("AAPL")
    assert not result.from_cache
    assert len(source.calls) == 2


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="recheck_seconds"):
        PriceFrames(recheck_seconds=-1)
