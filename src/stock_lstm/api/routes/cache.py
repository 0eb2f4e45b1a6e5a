"""The price cache of one ticker: inspect, sync (through the cache rule) and delete."""

from typing import Annotated

from fastapi import APIRouter, Query

from stock_lstm.api.deps import ContextDep, MetricsDep, TickerPath, TokenRequired
from stock_lstm.api.schemas import CacheDeleted, CacheStatusResponse, ErrorResponse, SyncResponse
from stock_lstm.workflows import sync_ticker

router = APIRouter(prefix="/cache", tags=["cache"])


@router.get("/{ticker}", responses={422: {"model": ErrorResponse}})
def get_cache_status(ticker: TickerPath, ctx: ContextDep) -> CacheStatusResponse:
    """Rows, date span, download time and freshness of the ticker's cached prices."""
    return CacheStatusResponse.model_validate(ctx.prices.status(ticker))


@router.post(
    "/{ticker}/sync",
    dependencies=[TokenRequired],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse, "description": "The source has no prices for it."},
        422: {"model": ErrorResponse},
    },
)
def sync_cache(
    ticker: TickerPath,
    ctx: ContextDep,
    metrics: MetricsDep,
    force: Annotated[bool, Query(description="Download even if the cache is fresh.")] = False,
) -> SyncResponse:
    """Bring the cache up to date; a fresh cache answers without asking the source."""
    result = sync_ticker(ctx, ticker, force=force)
    metrics.observe_sync(result.from_cache)
    return SyncResponse.model_validate(result)


@router.delete(
    "/{ticker}",
    dependencies=[TokenRequired],
    responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
def delete_cache(ticker: TickerPath, ctx: ContextDep) -> CacheDeleted:
    """Forget the ticker's cached prices (the next sync downloads them again)."""
    return CacheDeleted(ticker=ticker, deleted_rows=ctx.prices.delete(ticker))
