"""The price cache rule: when to trust stored rows, when to download, and how to write them.

Rules (per ticker, in one place):

* Rows are *fresh* while ``now - updated_at < expiry_hours`` (oldest ``updated_at`` of the
  ticker's rows); ``expiry_hours=0`` means always refresh (never fresh). A fresh cache is
  used as is, unless the caller asks for history starting more than
  ``EARLIER_HISTORY_TOLERANCE_DAYS`` before the first cached day.
* Otherwise (expired, missing, ``force``) the source is asked. A source that can fetch a date
  range only fetches the tail from ``last_date - INCREMENTAL_OVERLAP_DAYS``; if the overlapping
  closes moved by more than ``READJUSTMENT_TOLERANCE`` (a split or dividend re-adjusted the
  whole history) the tail is discarded and everything is downloaded again.
* Writes happen in one transaction and stamp ``updated_at`` on all the ticker's rows.
* If the source fails and rows exist, they are returned as stale with a loud warning.

:class:`PriceStore` applies them for one database and source (a process builds one, on its
``AppContext``); :mod:`stock_lstm.data.price_frames` saves reading unchanged rows back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stock_lstm.clock import Clock, utc_now
from stock_lstm.data.frames import INDEX_NAME, PRICE_COLUMNS, NormalizedPrices, empty_price_frame
from stock_lstm.data.price_frames import CacheSummary, PriceFrames
from stock_lstm.data.sources import PriceSource, check_date_range
from stock_lstm.db import Database, PriceCache
from stock_lstm.errors import DataSourceError, InvalidParameterError, NotEnoughDataError
from stock_lstm.tickers import validate_ticker

logger = logging.getLogger(__name__)

#: A requested start this many calendar days before the first cached day forces a download
#: (smaller gaps are weekends and holidays, not missing history).
EARLIER_HISTORY_TOLERANCE_DAYS = 7
#: Calendar days of already-cached history an incremental fetch re-downloads to compare.
INCREMENTAL_OVERLAP_DAYS = 7
#: Relative close difference on overlapping days that means the history was re-adjusted.
READJUSTMENT_TOLERANCE = 0.005
#: Dates per ``IN (...)`` clause when replacing rows (keeps every backend's limit happy).
_DELETE_CHUNK = 500


@dataclass(frozen=True)
class CacheStatus:
    """What the cache holds for one ticker and whether it is still fresh."""

    ticker: str
    rows: int
    first_date: date | None
    last_date: date | None
    updated_at: datetime | None
    fresh: bool


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: where the rows came from, what was dropped, and any caveat.

    ``rows``/``first_date``/``last_date`` describe the cache after the sync, within the
    requested ``start``/``end`` if given.
    """

    ticker: str
    rows: int
    first_date: date | None
    last_date: date | None
    from_cache: bool
    dropped_rows: int
    drop_reasons: dict[str, int]
    downloaded_rows: int
    incremental: bool
    stale: bool
    warning: str | None
    updated_at: datetime | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (dates and datetimes as ISO strings)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, date):  # datetime is a date too
                data[key] = value.isoformat()
        data["drop_reasons"] = dict(self.drop_reasons)
        return data


@dataclass(frozen=True)
class _Download:
    prices: NormalizedPrices
    incremental: bool


def _now(clock: Clock) -> datetime:
    """The clock's time as aware UTC (a naive clock is taken to be UTC)."""
    now = clock()
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _expiry(expiry_hours: float) -> timedelta:
    try:
        if not math.isfinite(expiry_hours) or expiry_hours < 0:
            raise ValueError
        return timedelta(hours=expiry_hours)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterError(
            f"expiry_hours must be a finite number of hours >= 0, got {expiry_hours!r}: "
            "pass e.g. 24"
        ) from None


def is_fresh(updated_at: datetime | None, now: datetime, expiry: timedelta) -> bool:
    """True while rows stamped ``updated_at`` are younger than ``expiry`` at ``now``.

    An expiry of 0 means "always refresh": never fresh, even for rows stamped by a clock
    running ahead of this one (``now - updated_at`` below zero would otherwise pass).
    """
    return expiry > timedelta(0) and updated_at is not None and now - updated_at < expiry


def needs_earlier_history(first_cached: date | None, start: date | None) -> bool:
    """True when ``start`` lies clearly (more than a long weekend) before the cached history."""
    if first_cached is None or start is None:
        return False
    return (first_cached - start).days > EARLIER_HISTORY_TOLERANCE_DAYS


def closes_agree(cached: pd.Series, downloaded: pd.Series) -> bool:
    """True when closes on the days both series share differ by at most the tolerance.

    No shared day means nothing can be checked, so the answer is False (download it all).
    """
    shared = cached.index.intersection(downloaded.index)
    if shared.empty:
        return False
    old = cached.loc[shared].to_numpy(dtype="float64")
    new = downloaded.loc[shared].to_numpy(dtype="float64")
    relative = np.abs(new - old) / np.abs(old)
    return bool(np.all(relative <= READJUSTMENT_TOLERANCE))


def _ticker_conditions(
    ticker: str, start: date | None = None, end: date | None = None
) -> list[Any]:
    conditions = [PriceCache.ticker == ticker]
    if start is not None:
        conditions.append(PriceCache.date >= start)
    if end is not None:
        conditions.append(PriceCache.date <= end)
    return conditions


def _summary_query() -> Select[Any]:
    return select(
        func.count(PriceCache.id),
        func.min(PriceCache.date),
        func.max(PriceCache.date),
        func.min(PriceCache.updated_at),
        func.sum(PriceCache.close),
        func.sum(PriceCache.volume),
    )


#: The whole-history summary, built once: the cache rule runs it on every price read.
_WHOLE_HISTORY_SUMMARY = _summary_query().where(PriceCache.ticker == bindparam("ticker"))


def _as_summary(row: Any) -> CacheSummary:
    rows, first, last, updated, close_sum, volume_sum = row
    return CacheSummary(int(rows or 0), first, last, updated, (close_sum, volume_sum))


def _summary(
    session: Session, ticker: str, start: date | None = None, end: date | None = None
) -> CacheSummary:
    statement = _summary_query().where(*_ticker_conditions(ticker, start, end))
    return _as_summary(session.execute(statement).one())


def _whole_history_summary(db: Database, ticker: str) -> CacheSummary:
    """``_summary`` of every row, on a plain connection (no ORM session: this is hot)."""
    with db.engine.connect() as connection:
        return _as_summary(connection.execute(_WHOLE_HISTORY_SUMMARY, {"ticker": ticker}).one())


def load_cached_prices(
    db: Database, ticker: str, *, start: date | None = None, end: date | None = None
) -> pd.DataFrame:
    """Cached prices in the ``NormalizedPrices.frame`` layout, clipped to ``[start, end]``.

    An empty frame with the same columns when nothing is cached.
    """
    symbol = validate_ticker(ticker)
    check_date_range(start, end)
    columns = [getattr(PriceCache, name) for name in PRICE_COLUMNS]
    statement = (
        select(PriceCache.date, *columns)
        .where(*_ticker_conditions(symbol, start, end))
        .order_by(PriceCache.date)
    )
    with db.session() as session:
        records = session.execute(statement).all()
    if not records:
        return empty_price_frame()
    index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in records]), name=INDEX_NAME)
    values = np.array([[np.nan if v is None else v for v in r[1:]] for r in records], "float64")
    return pd.DataFrame(values, index=index.as_unit("ns"), columns=list(PRICE_COLUMNS))


def _price_rows(ticker: str, frame: pd.DataFrame, now: datetime) -> list[dict[str, Any]]:
    """Plain-Python dicts for an executemany insert (NaN adjusted close -> NULL)."""
    rows: list[dict[str, Any]] = []
    for stamp, *values in frame.loc[:, list(PRICE_COLUMNS)].itertuples(index=True, name=None):
        row: dict[str, Any] = {"ticker": ticker, "date": stamp.date(), "updated_at": now}
        for name, value in zip(PRICE_COLUMNS, values, strict=True):
            number = float(value)
            row[name] = None if math.isnan(number) else number
        rows.append(row)
    return rows


_generations: weakref.WeakKeyDictionary[Database, int] = weakref.WeakKeyDictionary()
_generations_lock = threading.Lock()


def write_generation(db: Database) -> int:
    """How many price writes and deletes this process has made through ``db``.

    Read before a summary query and compared later, it tells whether this process has changed
    the cache since (see :class:`~stock_lstm.data.price_frames.PriceFrames`); other
    processes' writes are not counted.
    """
    with _generations_lock:
        return _generations.get(db, 0)


def _wrote(db: Database) -> None:
    """Count a committed write (call after the commit: a reader that saw the old rows
    recorded the old generation, so its remembered summary is no longer trusted)."""
    with _generations_lock:
        _generations[db] = _generations.get(db, 0) + 1


def _chunks(items: Sequence[date], size: int) -> Iterable[Sequence[date]]:
    for offset in range(0, len(items), size):
        yield items[offset : offset + size]


@dataclass(frozen=True)
class _Request:
    """One caller's ask of the cache for one ticker, checked when made (bad input changes
    nothing): the arguments every step of a sync needs, passed as one value.

    ``start``/``end`` (inclusive) bound a full download, the reported row counts and the
    frame loaded; ``force`` downloads even when the cache is fresh; fewer than ``min_rows``
    rows within ``[start, end]`` raise ``NotEnoughDataError`` and cache nothing (``purpose``
    names what needs them in the message).
    """

    ticker: str
    start: date | None = None
    end: date | None = None
    force: bool = False
    min_rows: int = 0
    purpose: str = "this"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ticker", validate_ticker(self.ticker))
        check_date_range(self.start, self.end)

    @property
    def whole_history(self) -> bool:
        return self.start is None and self.end is None

    @property
    def key(self) -> tuple[str, date | None, date | None]:
        """What the frame loaded for this request is kept under in ``PriceFrames``."""
        return (self.ticker, self.start, self.end)

    @property
    def plain(self) -> bool:
        """The whole history with no ``force`` and no row requirement: the only kind of read
        a summary from within ``PriceFrames.recheck_seconds`` may answer."""
        return self.whole_history and not self.force and self.min_rows == 0

    def check_rows(self, summary: CacheSummary) -> None:
        """``NotEnoughDataError`` unless ``summary`` (of ``[start, end]``) holds ``min_rows``."""
        if summary.rows >= self.min_rows:
            return
        span = f" ({summary.first_date}..{summary.last_date})" if summary.rows else ""
        raise NotEnoughDataError(
            f"{self.ticker} has only {summary.rows} price rows{span}; {self.purpose} needs at "
            f"least {self.min_rows}: use an earlier --start, or check the symbol"
        )


def _write(db: Database, request: _Request, download: _Download, now: datetime) -> int:
    """Replace the downloaded days (or all days, for a full download) in one transaction.

    The transaction is rolled back (nothing cached) when the result would hold fewer rows
    than ``request.min_rows`` within its range: bad input changes nothing.
    """
    ticker = request.ticker
    rows = _price_rows(ticker, download.prices.frame, now)
    dates = [row["date"] for row in rows]
    with db.transaction() as session:
        if download.incremental:
            for chunk in _chunks(dates, _DELETE_CHUNK):
                same_days = PriceCache.date.in_(chunk)
                session.execute(delete(PriceCache).where(PriceCache.ticker == ticker, same_days))
        else:
            session.execute(delete(PriceCache).where(PriceCache.ticker == ticker))
        session.execute(insert(PriceCache), rows)
        session.execute(
            update(PriceCache).where(PriceCache.ticker == ticker).values(updated_at=now)
        )
        if request.min_rows > 0:  # (only then is the summary query worth its time)
            request.check_rows(_summary(session, ticker, request.start, request.end))
    return len(rows)


def _write_with_retry(db: Database, request: _Request, download: _Download, now: datetime) -> int:
    """Write; if a concurrent sync inserted the same days first, replace them once more."""
    try:
        written = _write(db, request, download, now)
    except IntegrityError:
        logger.info("concurrent write of %s prices detected; retrying once", request.ticker)
        written = _write(db, request, download, now)
    _wrote(db)
    return written


class PriceStore:
    """The price cache of one database, read through one source under the cache rule.

    Why one object: the database, the source, the expiry, the clock and the reused frames
    are the same for every price read of a process, so they are given once (``AppContext``
    builds the store) rather than with every call; a call names only what varies: the
    ticker, the date range, ``force`` and the rows it needs.

    ``expiry_hours`` is checked here, so a bad value fails before anything is read.
    ``frames``: :meth:`get` reuses frames loaded earlier while their rows are unchanged (see
    :class:`~stock_lstm.data.price_frames.PriceFrames`); ``None`` reads them every time.
    """

    def __init__(
        self,
        db: Database,
        source: PriceSource,
        *,
        expiry_hours: float,
        clock: Clock = utc_now,
        frames: PriceFrames | None = None,
    ) -> None:
        self._expiry = _expiry(expiry_hours)
        self.db = db
        self.source = source
        self.expiry_hours = expiry_hours
        self.clock = clock
        self.frames = frames

    # --- what is cached ---------------------------------------------------------------------

    def status(self, ticker: str) -> CacheStatus:
        """Rows, date span, oldest ``updated_at`` and freshness of one ticker's cached prices."""
        symbol = validate_ticker(ticker)
        with self.db.session() as session:
            summary = _summary(session, symbol)
        return CacheStatus(
            ticker=symbol,
            rows=summary.rows,
            first_date=summary.first_date,
            last_date=summary.last_date,
            updated_at=summary.updated_at,
            fresh=summary.rows > 0 and self._is_fresh(summary),
        )

    def load(
        self, ticker: str, *, start: date | None = None, end: date | None = None
    ) -> pd.DataFrame:
        """The cached prices as they are (no sync, no source), clipped to ``[start, end]``."""
        return load_cached_prices(self.db, ticker, start=start, end=end)

    def delete(self, ticker: str) -> int:
        """Remove every cached row of ``ticker``; returns how many rows were deleted."""
        symbol = validate_ticker(ticker)
        with self.db.transaction() as session:
            deleted = session.execute(delete(PriceCache).where(PriceCache.ticker == symbol))
        _wrote(self.db)
        return int(deleted.rowcount or 0)

    # --- the cache rule -----------------------------------------------------------------------

    def sync(
        self,
        ticker: str,
        *,
        force: bool = False,
        start: date | None = None,
        end: date | None = None,
        min_rows: int = 0,
        purpose: str = "this",
    ) -> SyncResult:
        """Make the cache hold current prices for ``ticker`` (see the module docstring's rules).

        ``min_rows``: fewer rows than this within ``[start, end]`` raises ``NotEnoughDataError``
        and caches nothing (``purpose`` names what needs them in the message).

        ``start``/``end`` (inclusive) bound a full download and the reported row counts; a
        fresh cache is reused whatever the range unless ``start`` predates it by more than a
        week. Raises ``DataSourceError`` only when the source fails and nothing is cached.
        """
        result, _unchanged = self._sync(_Request(ticker, start, end, force, min_rows, purpose))
        return result

    def get(
        self,
        ticker: str,
        *,
        force: bool = False,
        start: date | None = None,
        end: date | None = None,
        min_rows: int = 0,
        purpose: str = "this",
    ) -> tuple[pd.DataFrame, SyncResult]:
        """:meth:`sync`, then the cached prices within ``[start, end]`` (the usual entry point).

        With ``frames``, a frame loaded earlier is reused while the rows are unchanged; the
        cache rule runs either way, on a summary read at most ``frames.recheck_seconds`` ago.
        """
        request = _Request(ticker, start, end, force, min_rows, purpose)
        if self.frames is None:
            result, _unchanged = self._sync(request)
            return self._load(request), result
        return self._get_reusing(request, self.frames)

    def _get_reusing(
        self, request: _Request, frames: PriceFrames
    ) -> tuple[pd.DataFrame, SyncResult]:
        """``get`` through ``frames``: a kept frame whose rows the summary shows unchanged is
        copied instead of read back; a frame just written over is forgotten."""
        generation = write_generation(self.db)
        recent = self._recent(request, frames, generation)
        if recent is not None:
            return recent
        checked_at = time.monotonic()
        result, unchanged = self._sync(request)
        if unchanged is None:  # just written: what was kept no longer describes the rows
            frames.forget(request.key)
            return self._load(request), result
        reused = frames.get(request.key, unchanged)
        if reused is not None:
            frames.touch(request.key, unchanged, generation, checked_at)
            return reused, result
        prices = self._load(request)
        frames.put(request.key, unchanged, prices, generation=generation, checked_at=checked_at)
        return prices, result

    def _recent(
        self, request: _Request, frames: PriceFrames, generation: int
    ) -> tuple[pd.DataFrame, SyncResult] | None:
        """The kept frame of a plain request if its summary was read within the recheck window
        and still counts as fresh on the current clock (no database query at all)."""
        if not request.plain:
            return None
        recent = frames.recent(request.key, generation)
        if recent is None:
            return None
        summary, prices = recent
        if not self._is_fresh(summary):
            return None
        return prices, self._cached_result(request.ticker, summary, summary)

    def _sync(self, request: _Request) -> tuple[SyncResult, CacheSummary | None]:
        """``sync``, plus the in-range summary when nothing was written (else ``None``)."""
        now = self._now()
        cached, in_range = self._summaries(request)
        earlier = needs_earlier_history(cached.first_date, request.start)
        fresh = cached.rows > 0 and is_fresh(cached.updated_at, now, self._expiry)

        if fresh and not request.force and not earlier:
            request.check_rows(in_range)
            return self._cached_result(request.ticker, cached, in_range), in_range

        try:
            download = self._download(request, cached, full=request.force or earlier)
        except DataSourceError as error:
            if cached.rows == 0:
                raise
            request.check_rows(in_range)
            return self._stale_result(request.ticker, cached, in_range, error), in_range

        return self._store(request, download, now), None

    def _summaries(self, request: _Request) -> tuple[CacheSummary, CacheSummary]:
        """The summaries of the ticker's whole history and of the requested range."""
        if request.whole_history:
            whole = _whole_history_summary(self.db, request.ticker)
            return whole, whole
        with self.db.session() as session:
            whole = _summary(session, request.ticker)
            return whole, _summary(session, request.ticker, request.start, request.end)

    def _download(self, request: _Request, cached: CacheSummary, *, full: bool) -> _Download:
        """Fetch only the tail when the source and cache allow it, else the whole range."""
        ticker = request.ticker
        if not full and self.source.supports_incremental and cached.last_date is not None:
            tail_start = cached.last_date - timedelta(days=INCREMENTAL_OVERLAP_DAYS)
            end = request.end
            tail_end = end if end is not None and end >= tail_start else None
            tail = self.source.fetch(ticker, tail_start, tail_end)
            known = load_cached_prices(self.db, ticker, start=tail_start)
            if closes_agree(known["close"], tail.frame["close"]):
                return _Download(tail, incremental=True)
            logger.info(
                "%s closes since %s differ from the cache by more than %.1f%% (re-adjusted "
                "history or no overlap): downloading the full range",
                ticker,
                tail_start,
                READJUSTMENT_TOLERANCE * 100,
            )
        return _Download(self.source.fetch(ticker, request.start, request.end), incremental=False)

    def _store(self, request: _Request, download: _Download, now: datetime) -> SyncResult:
        """Write a download and describe the cache after it."""
        written = _write_with_retry(self.db, request, download, now)
        with self.db.session() as session:
            after = _summary(session, request.ticker, request.start, request.end)
        logger.info(
            "cached %d %s rows from %s (%s)",
            written,
            request.ticker,
            self.source.name,
            "incremental" if download.incremental else "full",
        )
        return SyncResult(
            ticker=request.ticker,
            rows=after.rows,
            first_date=after.first_date,
            last_date=after.last_date,
            from_cache=False,
            dropped_rows=download.prices.dropped_rows,
            drop_reasons=dict(download.prices.drop_reasons),
            downloaded_rows=written,
            incremental=download.incremental,
            stale=False,
            warning=None,
            updated_at=now,
            source=self.source.name,
        )

    def _cached_result(
        self,
        symbol: str,
        cached: CacheSummary,
        in_range: CacheSummary,
        *,
        warning: str | None = None,
    ) -> SyncResult:
        """The answer of the cache rule when the cached rows are used as they are
        (``warning``: because the source failed, so they are stale)."""
        return SyncResult(
            ticker=symbol,
            rows=in_range.rows,
            first_date=in_range.first_date,
            last_date=in_range.last_date,
            from_cache=True,
            dropped_rows=0,
            drop_reasons={},
            downloaded_rows=0,
            incremental=False,
            stale=warning is not None,
            warning=warning,
            updated_at=cached.updated_at,
            source=self.source.name,
        )

    def _stale_result(
        self,
        symbol: str,
        cached: CacheSummary,
        in_range: CacheSummary,
        error: DataSourceError,
    ) -> SyncResult:
        stamp = cached.updated_at.strftime("%Y-%m-%d %H:%M UTC") if cached.updated_at else "unknown"
        warning = (
            f"could not refresh {symbol} from {self.source.name} ({error}); using {cached.rows} "
            f"cached rows up to {cached.last_date} (downloaded {stamp}): the data may be out of "
            "date"
        )
        logger.warning("STALE PRICES: %s", warning)
        return self._cached_result(symbol, cached, in_range, warning=warning)

    def _is_fresh(self, summary: CacheSummary) -> bool:
        return is_fresh(summary.updated_at, self._now(), self._expiry)

    def _now(self) -> datetime:
        return _now(self.clock)

    def _load(self, request: _Request) -> pd.DataFrame:
        return load_cached_prices(self.db, request.ticker, start=request.start, end=request.end)
