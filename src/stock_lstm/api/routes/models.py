"""The model registry: list versions, see a ticker's active one, activate another."""

import dataclasses
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from stock_lstm.api.deps import (
    ContextDep,
    CursorQuery,
    ServerDetailsDep,
    TickerPath,
    TokenRequired,
    id_path,
    no_active_model,
)
from stock_lstm.api.schemas import ErrorResponse, ModelList, ModelResponse
from stock_lstm.db.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from stock_lstm.errors import InvalidParameterError, ModelNotFoundError
from stock_lstm.models import registry
from stock_lstm.models.universal import is_universal_id
from stock_lstm.tickers import validate_ticker
from stock_lstm.universal_workflows import activate_universal

router = APIRouter(prefix="/models", tags=["models"])


def unknown_version(version_id: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"no model version {version_id!r}: list versions with GET /api/v1/models"
    )


VersionId = Annotated[str, id_path("A version from GET /models.")]


@router.get("", responses={422: {"model": ErrorResponse}})
def list_models(
    ctx: ContextDep,
    details: ServerDetailsDep,
    ticker: Annotated[str | None, Query(description="Only this ticker's versions.")] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="At most this many versions.")
    ] = DEFAULT_PAGE_SIZE,
    cursor: CursorQuery = None,
    horizons: Annotated[
        Literal["first", "all"],
        Query(
            description="'first': each version's metrics carry the next day's scores only "
            "(horizons[0]); 'all': every horizon, about 23 KB more per version."
        ),
    ] = "first",
) -> ModelList:
    """Registered versions, newest first, with their test metrics beside persistence; a
    page at a time (``total`` in all; follow ``next_cursor`` for the rest).

    Each version's metrics carry the next day's scores only unless ``horizons=all``: the 30
    horizons are nine tenths of a version's metrics (a page of 100 is 0.7 MB, not 2.7 MB).
    """
    page = registry.list_models_page(ctx.db, ticker, limit=limit, cursor=cursor)
    records = page.items if horizons == "all" else [_first_horizon(r) for r in page.items]
    return ModelList(
        models=[
            ModelResponse.from_record(record).for_client(details, ctx.settings)
            for record in records
        ],
        total=page.total,
        next_cursor=page.next_cursor,
    )


def _first_horizon(record: registry.ModelRecord) -> registry.ModelRecord:
    metrics = record.metrics.model_copy(update={"horizons": record.metrics.horizons[:1]})
    return dataclasses.replace(record, metrics=metrics)


@router.get("/{ticker}/active", responses={404: {"model": ErrorResponse}})
def active_model(ticker: TickerPath, ctx: ContextDep, details: ServerDetailsDep) -> ModelResponse:
    """The version that answers predictions for ``ticker``."""
    try:
        record = registry.get_active_model(ctx.db, ticker)
    except ModelNotFoundError:
        raise no_active_model(ticker) from None
    return ModelResponse.from_record(record).for_client(details, ctx.settings)


@router.post(
    "/{version_id}/activate",
    dependencies=[TokenRequired],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)
def activate_model(
    version_id: VersionId,
    ctx: ContextDep,
    details: ServerDetailsDep,
    ticker: Annotated[
        str | None,
        Query(
            description="With a universal version (UNIVERSAL_...): the ticker to serve it for. "
            "It gets its own version (its encoder, gate, test scores and calibration), "
            "active if the promotion gate passes."
        ),
    ] = None,
    force: Annotated[
        bool, Query(description="With ticker: activate even if the gate fails.")
    ] = False,
) -> ModelResponse:
    """Make ``version_id`` its ticker's active model; the next prediction uses it. A universal
    version belongs to no ticker: name one with ``?ticker=`` (``stock-lstm activate VERSION
    --ticker X``); scoring it on that ticker's rows takes a few seconds."""
    if is_universal_id(version_id):
        if not ticker:
            raise InvalidParameterError(
                f"{version_id} is a universal version: name the ticker to serve it for, "
                f"e.g. POST /api/v1/models/{version_id}/activate?ticker=AAPL"
            )
        outcome = activate_universal(ctx, version_id, validate_ticker(ticker), force=force)
        assert outcome.record is not None
        return ModelResponse.from_record(outcome.record).for_client(details, ctx.settings)
    if ticker:
        raise InvalidParameterError(
            "?ticker= goes with a universal version (UNIVERSAL_...): a ticker's own version "
            "is activated without it"
        )
    try:
        record = registry.activate_version(ctx.db, version_id)
    except ModelNotFoundError:
        raise unknown_version(version_id) from None
    return ModelResponse.from_record(record).for_client(details, ctx.settings)
