"""Liveness for orchestrators (``/health``) and Prometheus' scrape target (``/metrics``)."""

import logging
import tempfile
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from stock_lstm import __version__
from stock_lstm.api.deps import ContextDep, MetricsDep, ServerDetailsDep
from stock_lstm.api.schemas import HealthResponse
from stock_lstm.workflows import AppContext

log = logging.getLogger(__name__)
router = APIRouter(tags=["monitoring"])


#: What a client that may not see server details reads about a failed check.
GENERIC_FAILURE = "error: {what} (the server log has the details)"


def _check_database(ctx: AppContext, details: bool) -> str:
    """``ok``, or why the database does not answer (its exception names hosts, users and
    files: only for clients that may see server details; always in the log)."""
    try:
        with ctx.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        full = f"error: database unreachable ({type(exc).__name__}: {exc})"
        log.warning("health: %s", full)
        return full if details else GENERIC_FAILURE.format(what="database unreachable")
    return "ok"


def _check_models_dir(ctx: AppContext, details: bool) -> str:
    """``ok``, or why the models folder is not writable (its path only for clients that may
    see server details; always in the log)."""
    directory = Path(ctx.settings.models_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(b"ok")
    except OSError as exc:
        full = f"error: models folder {directory} is not writable ({exc})"
        log.warning("health: %s", full)
        return full if details else GENERIC_FAILURE.format(what="models folder not writable")
    return "ok"


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "A dependency is down."}},
)
def health(ctx: ContextDep, details: ServerDetailsDep) -> JSONResponse:
    """200 when the database answers and the models folder is writable, else 503."""
    database, models_dir = _check_database(ctx, details), _check_models_dir(ctx, details)
    healthy = database == "ok" and models_dir == "ok"
    body = HealthResponse(
        status="ok" if healthy else "unavailable",
        version=__version__,
        database=database,
        models_dir=models_dir,
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition of this app's metrics."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
