"""The cache rule: hits, expiry, incremental tails, re-adjusted history, stale fallback, upsert."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from yfinance_fakes import (
    YFINANCE_WARNING_FILTER,
    FakeClock,
    FakeSource,
    TickerCalls,
    history_frame,
    install_ticker,
    make_fake_ticker,
    real_download,
)

from stock_lstm.data.cache import PriceStore, SyncResult, load_cached_prices
from stock_lstm.data.frames import PRICE_COLUMNS, normalize_ohlcv
from stock_lstm.data.price_frames import PriceFrames
from stock_lstm.data.sources import CsvSource, PriceSource, YahooSource
from stock_lstm.data.synthetic import synthetic_prices, write_flat_csv, write_yfinance_csv
from stock_lstm.db import Database, PriceCache
from stock_lstm.errors import DataSourceError, InvalidParameterError, InvalidTickerError

pytestmark = pytest.mark.filterwarnings(YFINANCE_WARNING_FILTER)

EXPIRY_HOURS = 24.0
#: 70 business days from 2024-01-02; the cache first sees the first 60.
FULL_HISTORY = synthetic_prices("AAPL", rows=70, start="2024-01-02")
FIRST_60 = FULL_HISTORY.iloc[:60]
LAST_OF_60 = FIRST_60.index[-1].date()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


def store(
    db: Database,
    source: PriceSource | None = None,
    clock: FakeClock | None = None,
    *,
    expiry_hours: float = EXPIRY_HOURS,
    frames: PriceFrames | None = None,
) -> PriceStore:
    """A ``PriceStore`` with the test's expiry (unless given), clock and source (a fake one
    serving ``FIRST_60`` when the test only inspects or deletes)."""
    return PriceStore(
        db,
        FakeSource(FIRST_60) if source is None else source,
        expiry_hours=expiry_hours,
        clock=FakeClock() if clock is None else clock,
        frames=frames,
    )


def sync(db: Database, source: PriceSource, clock: FakeClock, **options: Any) -> SyncResult:
    """``PriceStore.sync`` (AAPL unless ``ticker=`` is given) with the test's expiry and clock."""
    ticker = options.pop("ticker", "AAPL")
    return store(db, source, clock).sync(ticker, **options)


def total_rows(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count(PriceCache.id))) or 0)


def snapshot(db: Database, ticker: str = "AAPL") -> list[tuple[object, ...]]:
    """Every stored field of a ticker's rows, to prove nothing was written."""
    with db.session() as session:
        rows = session.scalars(
            select(PriceCache).where(PriceCache.ticker == ticker).order_by(PriceCache.date)
        ).all()
        return [(r.date, r.close, r.adj_close, r.volume, r.updated_at) for r in rows]


def scaled(frame: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Prices times ``factor`` (what a split or dividend re-adjustment does to history)."""
    prices = ["Open", "High", "Low", "Close", "Adj Close"]
    result = frame.copy()
    result[prices] = result[prices] * factor
    return result


# --- hits, misses, expiry, force -----------------------------------------------------------


def test_miss_downloads_and_stores_everything(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)

    result = sync(db, source, fake_clock)

    assert source.calls == [("AAPL", None, None)]
    assert not result.from_cache and not result.incremental and not result.stale
    assert result.rows == result.downloaded_rows == 60
    assert result.first_date == date(2024, 1, 2) and result.last_date == LAST_OF_60
    assert result.updated_at == fake_clock.now and result.source == "fake"
    expected = normalize_ohlcv(FIRST_60, "AAPL").frame
    pd.testing.assert_frame_equal(load_cached_prices(db, "aapl"), expected)


def test_hit_within_expiry_does_not_call_source(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    first = sync(db, source, fake_clock)
    fake_clock.advance(hours=EXPIRY_HOURS - 0.01)

    result = sync(db, source, fake_clock)

    assert len(source.calls) == 1
    assert result.from_cache and not result.stale and result.warning is None
    assert result.downloaded_rows == 0 and result.rows == 60
    assert result.updated_at == first.updated_at


def test_expiry_triggers_a_new_download(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60, supports_incremental=False)
    sync(db, source, fake_clock)
    fake_clock.advance(hours=EXPIRY_HOURS)
    source.raw = FULL_HISTORY

    result = sync(db, source, fake_clock)

    assert source.calls == [("AAPL", None, None)] * 2
    assert not result.from_cache and not result.incremental
    assert result.rows == 70 and result.updated_at == fake_clock.now
    assert store(db, source, fake_clock).status("AAPL").fresh


def test_expiry_zero_always_refreshes_even_rows_stamped_ahead_of_the_clock(
    db: Database, fake_clock: FakeClock
) -> None:
    """``STOCK_LSTM_CACHE_EXPIRY_HOURS=0`` means always refresh: rows written by a process
    whose clock runs ahead (``now - updated_at`` below zero) are not fresh either."""
    source = FakeSource(FIRST_60, supports_incremental=False)
    sync(db, source, fake_clock)
    fake_clock.advance(hours=-1)

    result = store(db, source, fake_clock, expiry_hours=0).sync("AAPL")

    assert len(source.calls) == 2 and not result.from_cache
    assert not store(db, source, fake_clock, expiry_hours=0).status("AAPL").fresh
    frames = PriceFrames(recheck_seconds=3600)
    reusing = store(db, source, fake_clock, expiry_hours=0, frames=frames)
    reusing.get("AAPL")
    reusing.get("AAPL")
    assert len(source.calls) == 4


def test_force_downloads_even_when_fresh(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock)
    fake_clock.advance(hours=1)

    result = sync(db, source, fake_clock, force=True)

    assert source.calls == [("AAPL", None, None)] * 2
    assert not result.from_cache and not result.incremental
    assert result.downloaded_rows == 60 and result.updated_at == fake_clock.now


def test_freshness_is_per_ticker(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock, ticker="AAPL")
    fake_clock.advance(hours=20)
    sync(db, source, fake_clock, ticker="MSFT")
    fake_clock.advance(hours=5)

    aapl = store(db, source, fake_clock).status("AAPL")
    msft = store(db, source, fake_clock).status("msft")

    assert not aapl.fresh and msft.fresh
    assert (aapl.rows, aapl.first_date, aapl.last_date) == (60, date(2024, 1, 2), LAST_OF_60)


def test_status_of_an_unknown_ticker(db: Database, fake_clock: FakeClock) -> None:
    status = store(db, clock=fake_clock).status("NVDA")
    assert (status.rows, status.first_date, status.updated_at, status.fresh) == (
        0,
        None,
        None,
        False,
    )


# --- incremental tails and re-adjusted history ----------------------------------------------


def test_incremental_sync_fetches_only_the_tail(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock)
    before = load_cached_prices(db, "AAPL")
    fake_clock.advance(hours=EXPIRY_HOURS + 1)
    source.raw = FULL_HISTORY

    result = sync(db, source, fake_clock)

    tail_start = LAST_OF_60 - timedelta(days=7)
    assert source.calls[-1] == ("AAPL", tail_start, None)
    assert len(source.calls) == 2
    assert result.incremental and not result.from_cache
    expected_tail = int((FULL_HISTORY.index >= pd.Timestamp(tail_start)).sum())
    assert result.downloaded_rows == expected_tail < 70
    assert result.rows == 70 and result.last_date == FULL_HISTORY.index[-1].date()
    after = load_cached_prices(db, "AAPL")
    pd.testing.assert_frame_equal(after.iloc[:60], before)
    # Freshness is per ticker: every row, old or new, carries this sync's time.
    assert {row[-1] for row in snapshot(db)} == {fake_clock.now}


def test_small_price_noise_keeps_the_sync_incremental(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock)
    fake_clock.advance(hours=EXPIRY_HOURS)
    source.raw = scaled(FULL_HISTORY, 1.004)  # below the 0.5 % re-adjustment tolerance

    result = sync(db, source, fake_clock)

    assert result.incremental and len(source.calls) == 2


def test_readjusted_overlap_triggers_a_full_download(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock)
    fake_clock.advance(hours=EXPIRY_HOURS)
    source.raw = scaled(FULL_HISTORY, 0.5)  # a 2:1 split re-adjusts the whole history

    result = sync(db, source, fake_clock)

    assert source.calls[1][1] == LAST_OF_60 - timedelta(days=7)
    assert source.calls[2] == ("AAPL", None, None)
    assert not result.incremental and result.downloaded_rows == 70 and result.rows == 70
    cached = load_cached_prices(db, "AAPL")
    np.testing.assert_allclose(cached["close"].to_numpy(), FULL_HISTORY["Close"].to_numpy() * 0.5)


def test_start_well_before_cached_history_forces_a_download(
    db: Database, fake_clock: FakeClock
) -> None:
    source = FakeSource(FULL_HISTORY)
    sync(db, source, fake_clock, start=date(2024, 1, 15))

    near = sync(db, source, fake_clock, start=date(2024, 1, 10))  # 5 days: weekend slack
    assert near.from_cache and len(source.calls) == 1

    far = sync(db, source, fake_clock, start=date(2024, 1, 2))
    assert source.calls[-1] == ("AAPL", date(2024, 1, 2), None)
    assert not far.from_cache and far.first_date == date(2024, 1, 2) and far.rows == 70


def test_yahoo_end_to_end_through_fake_ticker(db: Database, fake_clock: FakeClock) -> None:
    history = history_frame("AAPL", rows=44, start="2024-01-02")  # up to the clock's 2024-03-01
    histories = {"AAPL": history.iloc[:40]}
    calls = TickerCalls()
    fake_ticker = make_fake_ticker(histories, calls)
    source = YahooSource(history_years=10, clock=fake_clock, download=real_download())

    with pytest.MonkeyPatch.context() as patch:
        install_ticker(patch, fake_ticker)
        first = sync(db, source, fake_clock)
        fake_clock.advance(hours=EXPIRY_HOURS)
        histories["AAPL"] = history
        second = sync(db, source, fake_clock)

    assert calls.history[0]["start"] == "2014-03-01" and calls.history[0]["end"] == "2024-03-02"
    assert first.rows == 40 and first.source == "yahoo"
    tail_start = first.last_date - timedelta(days=7)
    assert calls.history[1]["start"] == tail_start.isoformat()
    assert second.incremental and second.rows == 44
    cached = load_cached_prices(db, "AAPL")
    assert cached["adj_close"].isna().all()  # auto-adjusted downloads carry no Adj Close
    np.testing.assert_allclose(cached["close"].to_numpy(), history["Close"].to_numpy())


# --- failures --------------------------------------------------------------------------------


def test_source_failure_falls_back_to_stale_rows(
    db: Database, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock)
    before = snapshot(db)
    fake_clock.advance(hours=EXPIRY_HOURS * 3)
    source.error = DataSourceError("Yahoo Finance unreachable")

    with caplog.at_level(logging.WARNING, logger="stock_lstm.data.cache"):
        result = sync(db, source, fake_clock)

    assert result.stale and result.from_cache and result.downloaded_rows == 0
    assert result.rows == 60 and result.last_date == LAST_OF_60
    assert result.warning is not None
    assert "may be out of date" in result.warning
    assert LAST_OF_60.isoformat() in result.warning
    assert "Yahoo Finance unreachable" in result.warning
    assert snapshot(db) == before
    assert any(r.levelno == logging.WARNING and "out of date" in r.message for r in caplog.records)


def test_source_failure_with_empty_cache_raises_and_writes_nothing(
    db: Database, fake_clock: FakeClock
) -> None:
    source = FakeSource(FIRST_60)
    source.error = DataSourceError("no prices came back for AAPL")

    with pytest.raises(DataSourceError, match="no prices came back"):
        sync(db, source, fake_clock)

    assert total_rows(db) == 0


@pytest.mark.parametrize("ticker", ["", "   ", "A" * 17, "../x", "A B", "A;B", "A/B", None])
def test_malformed_tickers_are_rejected_before_anything_happens(
    db: Database, fake_clock: FakeClock, ticker: object
) -> None:
    source = FakeSource(FIRST_60)
    with pytest.raises(InvalidTickerError):
        sync(db, source, fake_clock, ticker=ticker)
    with pytest.raises(InvalidTickerError):
        store(db, source, fake_clock).get(ticker)  # type: ignore[arg-type]
    with pytest.raises(InvalidTickerError):
        store(db, source, fake_clock).delete(ticker)  # type: ignore[arg-type]
    assert source.calls == []
    assert total_rows(db) == 0


def test_start_after_end_is_rejected(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    with pytest.raises(InvalidParameterError, match="after end"):
        sync(db, source, fake_clock, start=date(2024, 2, 1), end=date(2024, 1, 1))
    assert source.calls == [] and total_rows(db) == 0


@pytest.mark.parametrize("expiry", [-1.0, float("nan"), float("inf")])
def test_bad_expiry_is_rejected(db: Database, fake_clock: FakeClock, expiry: float) -> None:
    source = FakeSource(FIRST_60)
    with pytest.raises(InvalidParameterError, match="expiry_hours"):
        store(db, source, fake_clock, expiry_hours=expiry).sync("AAPL")
    assert source.calls == []


# --- storage ---------------------------------------------------------------------------------


def test_upsert_keeps_one_row_per_ticker_and_date(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock, ticker="AAPL")
    sync(db, source, fake_clock, ticker="MSFT")
    for _ in range(3):  # overlapping incremental tails, then a forced full download
        fake_clock.advance(hours=EXPIRY_HOURS)
        source.raw = FULL_HISTORY
        sync(db, source, fake_clock, ticker="AAPL")
    sync(db, source, fake_clock, ticker="AAPL", force=True)

    with db.session() as session:
        repeated = session.execute(
            select(PriceCache.ticker, PriceCache.date)
            .group_by(PriceCache.ticker, PriceCache.date)
            .having(func.count() > 1)
        ).all()
    assert repeated == []
    assert len(snapshot(db, "AAPL")) == 70
    assert len(snapshot(db, "MSFT")) == 60


def test_missing_adjusted_close_is_stored_as_null(
    db: Database, fake_clock: FakeClock, tmp_path: Path
) -> None:
    write_yfinance_csv(FIRST_60, "AAPL", tmp_path / "prices" / "AAPL.csv")
    result = sync(db, CsvSource(tmp_path / "prices"), fake_clock)

    assert result.source == f"csv:{tmp_path / 'prices'}"
    assert all(row[2] is None for row in snapshot(db))
    assert load_cached_prices(db, "AAPL")["adj_close"].isna().all()


def test_get_syncs_then_clips(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)

    frame, result = store(db, source, fake_clock).get(
        "aapl", start=date(2024, 1, 3), end=date(2024, 1, 12)
    )

    assert source.calls == [("AAPL", date(2024, 1, 3), date(2024, 1, 12))]
    assert result.rows == len(frame) == 8
    assert (result.first_date, result.last_date) == (date(2024, 1, 3), date(2024, 1, 12))
    assert tuple(frame.columns) == PRICE_COLUMNS and frame.index.name == "date"


def test_load_from_an_empty_cache_has_the_canonical_columns(db: Database) -> None:
    frame = load_cached_prices(db, "AAPL")
    assert frame.empty
    assert tuple(frame.columns) == PRICE_COLUMNS
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "date"


def test_delete_removes_only_that_ticker(db: Database, fake_clock: FakeClock) -> None:
    source = FakeSource(FIRST_60)
    sync(db, source, fake_clock, ticker="AAPL")
    sync(db, source, fake_clock, ticker="MSFT")

    assert store(db, source, fake_clock).delete("aapl") == 60
    assert store(db, source, fake_clock).delete("AAPL") == 0
    assert total_rows(db) == 60
    fresh = sync(db, source, fake_clock, ticker="AAPL")
    assert not fresh.from_cache and len(source.calls) == 3


def test_sync_result_to_dict_is_json_safe(db: Database, fake_clock: FakeClock) -> None:
    raw = FIRST_60.astype("float64")
    raw.iloc[5] = np.nan
    result = sync(db, FakeSource(raw), fake_clock)

    data = json.loads(json.dumps(result.to_dict()))

    assert data["first_date"] == "2024-01-02"
    assert data["updated_at"] == fake_clock.now.isoformat()
    assert data["drop_reasons"] == {"no prices": 1} and data["dropped_rows"] == 1
    assert data["rows"] == 59


def test_too_short_history_for_the_caller_caches_nothing(db: Database, tmp_path: Path) -> None:
    from stock_lstm.errors import NotEnoughDataError

    prices = tmp_path / "prices"
    write_flat_csv(synthetic_prices("AAPL", rows=80), prices / "AAPL.csv")
    cache = PriceStore(db, CsvSource(prices), expiry_hours=24)
    with pytest.raises(NotEnoughDataError, match="needs at least 132"):
        cache.sync("AAPL", min_rows=132, purpose="training")
    assert cache.status("AAPL").rows == 0
    result = cache.sync("AAPL", min_rows=50)
    assert result.rows == 80
    with pytest.raises(NotEnoughDataError):
        cache.sync("AAPL", min_rows=132)
    assert cache.status("AAPL").rows == 80
