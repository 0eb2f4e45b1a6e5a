"""The model registry: list versions, see a ticker's active one, activate another."""

from typing import Annotated

from fastapi import APIRouter, Query

from stock_lstm.api.deps import (
    ContextDep,
    TickerPath,
    TokenRequired,
    id_path,
    no_active_model,
)
from stock_lstm.api.schemas import ErrorResponse, ModelList, ModelResponse
from stock_lstm.errors import ModelNotFoundError
from stock_lstm.models import registry

router = APIRouter(prefix="/models", tags=["models"])


def unknown_version(version_id: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"no model version {version_id!r}: list versions with GET /api/v1/models"
    )


VersionId = Annotated[str, id_path("A version from GET /models.")]


@router.get("", responses={422: {"model": ErrorResponse}})
def list_models(
    ctx: ContextDep,
    ticker: Annotated[str | None, Query(description="Only this ticker's versions.")] = None,
) -> ModelList:
    """Registered versions, newest first, with their test metrics beside persistence."""
    records = registry.list_models(ctx.db, ticker)
    return ModelList(models=[ModelResponse.from_record(record) for record in records])


@router.get("/{ticker}/active", responses={404: {"model": ErrorResponse}})
def active_model(ticker: TickerPath, ctx: ContextDep) -> ModelResponse:
    """The version that answers predictions for ``ticker``."""
    try:
        return ModelResponse.from_record(registry.get_active_model(ctx.db, ticker))
    except ModelNotFoundError:
        raise no_active_model(ticker) from None


@router.post(
    "/{version_id}/activate",
    dependencies=[TokenRequired],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
def activate_model(version_id: VersionId, ctx: ContextDep) -> ModelResponse:
    """Make ``version_id`` its ticker's active model; the next prediction uses it."""
    try:
        return ModelResponse.from_record(registry.activate_version(ctx.db, version_id))
    except ModelNotFoundError:
        raise unknown_version(version_id) from None
