"""The context every action runs in (settings, database, source, model cache) and the
price reads they share: sync, load, join the market ticker."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from dataclasses import InitVar, dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from stock_lstm import __version__
from stock_lstm.clock import Clock, utc_now
from stock_lstm.config import Settings, get_settings
from stock_lstm.data.cache import PriceStore, SyncResult
from stock_lstm.data.price_frames import PriceFrames
from stock_lstm.data.sources import PriceSource, check_date_range, source_from_spec
from stock_lstm.db import Database
from stock_lstm.errors import DataSourceError
from stock_lstm.models.forecasting import ModelCache

if TYPE_CHECKING:
    import pandas as pd


#: Forecasts one process computes at once. A forecast is CPU work that mostly holds the GIL,
#: so the API's request threads beyond a few only queue for it, and each holds a database
#: connection meanwhile: past the pool's 5 they open (and close) new ones per request.
FORECAST_SLOTS = 4


@dataclass
class AppContext:
    """The side effects every action needs, built once per process (or per test)."""

    settings: Settings
    db: Database
    source: PriceSource
    clock: Clock = utc_now
    model_cache: ModelCache = field(default_factory=ModelCache)
    #: Price frames reused while their rows are unchanged (forecasts read whole histories);
    #: they live on in ``prices`` (a new, empty memo when not given).
    price_frames: InitVar[PriceFrames | None] = None
    #: Forecasts running at once (see ``FORECAST_SLOTS``), shared by every copy of the context.
    forecast_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(FORECAST_SLOTS)
    )
    #: The price cache every action reads prices through: this context's database, source
    #: and clock, with the settings' ``cache_expiry_hours`` as they were when it was built.
    prices: PriceStore = field(init=False)

    def __post_init__(self, price_frames: PriceFrames | None) -> None:
        self.prices = PriceStore(
            self.db,
            self.source,
            expiry_hours=self.settings.cache_expiry_hours,
            clock=self.clock,
            frames=PriceFrames() if price_frames is None else price_frames,
        )

    @classmethod
    def create(
        cls,
        settings: Settings | None = None,
        *,
        source: str | None = None,
        clock: Clock = utc_now,
    ) -> AppContext:
        """Context from settings (environment by default); ``source`` overrides the setting."""
        settings = settings or get_settings()
        source_spec = source or settings.source
        return cls(
            settings=settings,
            db=Database(
                settings.database_url, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds
            ),
            source=source_from_spec(source_spec, history_years=settings.history_years, clock=clock),
            clock=clock,
            model_cache=ModelCache(
                settings.model_cache_size,
                threads=settings.torch_threads,
                models_dir=Path(settings.models_dir),
            ),
            price_frames=PriceFrames(recheck_seconds=settings.price_recheck_seconds),
        )


def sync_ticker(
    ctx: AppContext,
    ticker: str,
    *,
    force: bool = False,
    start: date | None = None,
    end: date | None = None,
) -> SyncResult:
    """Bring a ticker's cached prices up to date under the cache rule."""
    check_date_range(start, end)
    return ctx.prices.sync(ticker, force=force, start=start, end=end)


def load_prices(
    ctx: AppContext,
    ticker: str,
    *,
    force: bool = False,
    start: date | None = None,
    end: date | None = None,
    min_rows: int = 0,
    purpose: str = "this",
) -> tuple[pd.DataFrame, SyncResult]:
    """Prices of a ticker through the cache rule, clipped to ``start``/``end``.

    With ``min_rows``, too short a history raises ``NotEnoughDataError`` before anything
    is cached.
    """
    check_date_range(start, end)
    return ctx.prices.get(
        ticker, force=force, start=start, end=end, min_rows=min_rows, purpose=purpose
    )


def with_market(
    ctx: AppContext,
    prices: pd.DataFrame,
    inputs: str,
    *,
    force: bool = False,
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """``prices`` with the market ticker's columns when ``inputs`` reads them: the market is
    synced through the same source and cache rule as any ticker (``data.market``)."""
    from stock_lstm.data.encoding import needs_market
    from stock_lstm.data.market import MARKET_TICKER, attach_market

    if not needs_market(inputs):
        return prices
    try:
        market, _sync = load_prices(ctx, MARKET_TICKER, force=force, start=start, end=end)
    except DataSourceError as exc:
        raise DataSourceError(
            f"inputs {inputs!r} read the market ticker {MARKET_TICKER} beside every ticker, "
            f"and it could not be loaded: {exc}"
        ) from exc
    return attach_market(prices, market)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__


def fingerprint_prices(prices: pd.DataFrame) -> str:
    """sha256 of the exact rows a model was trained on (dates and prices as CSV text)."""
    text = prices.to_csv(float_format="%.10g", date_format="%Y-%m-%d")
    return hashlib.sha256(text.encode()).hexdigest()
