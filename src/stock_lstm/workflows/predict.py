"""Forecast with a ticker's active model on fresh prices, the interval calibration read
from and written to the registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from stock_lstm.evaluation.combination import anchor_log_bounds
from stock_lstm.models.forecasting import Forecast, make_forecast, validate_days
from stock_lstm.models.registry import (
    active_version_id,
    get_active_model,
)
from stock_lstm.tickers import validate_ticker
from stock_lstm.workflows.context import (
    AppContext,
    load_prices,
    with_market,
)

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class DatabaseCalibrationStore:
    """Versions' online calibration states in the database (``calibration_states``)."""

    ctx: AppContext

    def load(self, version_id: str) -> dict[str, Any] | None:
        from stock_lstm.models.registry import load_calibration_state

        return load_calibration_state(self.ctx.db, version_id)

    def save(self, version_id: str, through: date, state: dict[str, Any]) -> None:
        from stock_lstm.models.registry import save_calibration_state

        save_calibration_state(self.ctx.db, version_id, through, state, clock=self.ctx.clock)


def predict_ticker(
    ctx: AppContext,
    ticker: str,
    days: int,
    *,
    on_sync: Callable[[bool], None] | None = None,
) -> Forecast:
    """Forecast ``days`` trading days with the ticker's active model on fresh prices.

    ``on_sync`` is told whether the prices came from the cache (the API counts hits/misses).
    """
    days = validate_days(days)
    ticker = validate_ticker(ticker)
    with ctx.forecast_slots:
        loaded = ctx.model_cache.loaded(active_version_id(ctx.db, ticker))
        if loaded is None:
            loaded = ctx.model_cache.get(get_active_model(ctx.db, ticker))
        prices, sync = load_prices(ctx, ticker)
        prices = with_market(ctx, prices, loaded.encoder.inputs)
        if on_sync is not None:
            on_sync(sync.from_cache)
        forecast = make_forecast(
            loaded,
            prices,
            days,
            interval_level=ctx.settings.interval_level,
            store=DatabaseCalibrationStore(ctx),
            anchors=anchor_log_bounds,
        )
    if sync.warning:
        forecast.warnings.append(sync.warning)
    return forecast
