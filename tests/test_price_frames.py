"""Reused price frames (``PriceFrames``): never a stale frame, whatever changed the rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from yfinance_fakes import YFINANCE_WARNING_FILTER, FakeClock, FakeSource

from stock_lstm.data.cache import (
    PriceFrames,
    delete_cached_prices,
    get_prices,
    load_cached_prices,
)
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.db import Database

pytestmark = pytest.mark.filterwarnings(YFINANCE_WARNING_FILTER)

HISTORY = synthetic_prices("AAPL", rows=80, start="2024-01-02")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def read(
    db: Database, source: FakeSource, clock: FakeClock, frames: PriceFrames, **options: Any
) -> pd.DataFrame:
    prices, _sync = get_prices(
        db, source, "AAPL", expiry_hours=24.0, clock=clock, frames=frames, **options
    )
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
    delete_cached_prices(db, "AAPL")
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
