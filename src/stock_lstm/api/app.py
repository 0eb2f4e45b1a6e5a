"""The FastAPI application: routers, error mapping, body limit, metrics and the lifespan.

Every expected failure leaves as ``{"detail": "..."}`` with a 4xx: ``StockLSTMError`` subclasses
carry their own ``http_status``, request validation errors are flattened into one sentence
that names the field. Only a genuine bug is a 500.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stock_lstm import __version__
from stock_lstm.api import routes
from stock_lstm.api.guards import (
    AuthFailureLimiter,
    RequestGuardMiddleware,
    may_see_server_details,
    send_refusal,
)
from stock_lstm.api.redaction import client_detail
from stock_lstm.api.schemas import API_PREFIX
from stock_lstm.api.training_pool import RunTraining, make_training_pool
from stock_lstm.config import Settings
from stock_lstm.errors import StockLSTMError
from stock_lstm.models import jobs, registry
from stock_lstm.monitoring.metrics import UNMATCHED_ROUTE, ApiMetrics
from stock_lstm.workflows import AppContext

log = logging.getLogger(__name__)

#: Largest request body accepted (bytes); the biggest real one, a 50-ticker batch, is < 2 KiB.
MAX_BODY_BYTES = 64 * 1024


# --- error mapping --------------------------------------------------------------------------


def _describe_validation_error(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ())]
    if location[:1] and location[0] in ("body", "query", "path", "header"):
        location = location[1:]
    field = ".".join(location) or "body"
    kind = error.get("type", "")
    if kind == "json_invalid":
        reason = error.get("ctx", {}).get("error", "syntax error")
        return f"the request body is not valid JSON ({reason}): send a JSON object"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}: remove it (the request schema is at /docs)"
    if kind == "missing":
        return "a JSON body is required" if field == "body" else f"field {field!r} is required"
    if kind == "string_pattern_mismatch":  # only ids have a pattern (deps.id_path)
        return (
            f"{field}: {error.get('input')!r:.60} is not an id: ids are letters, digits and "
            "_ . - (list them with GET /api/v1/models or /api/v1/training/jobs)"
        )
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "value_error":  # our own validators: the message already names the value
        return message if field == "body" else f"{field}: {message}"
    if "input" in error and field != "body":
        return f"{field}: {message} (got {error['input']!r:.60})"
    return f"{field}: {message}"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(_describe_validation_error(error) for error in exc.errors())
    return JSONResponse(status_code=422, content={"detail": f"invalid request: {problems}"})


async def _stock_lstm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StockLSTMError)
    settings = request.app.state.context.settings
    show = may_see_server_details(request.scope, settings.api_token)
    detail = client_detail(exc, show_details=show, settings=settings)
    if not show and detail != str(exc):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    retry_after = getattr(exc, "retry_after_seconds", None)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse(status_code=exc.http_status, content={"detail": detail}, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        status_code=500,
        content={"detail": "internal error: the server log has the details; please report it"},
    )


# --- middleware -----------------------------------------------------------------------------


class BodySizeLimitMiddleware:
    """Answer 413 to bodies over ``max_bytes``, by Content-Length or by the bytes streamed.

    The body (at most ``max_bytes``) is read here and replayed to the app, so a chunked
    upload without Content-Length cannot slip past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes} bytes: send a smaller JSON "
            "body (a batch takes at most 50 tickers)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_refusal(send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > self.max_bytes:
                await send_refusal(send, 413, self._too_large())
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_refusal(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Count and time every HTTP request by method, route template and status.

    The template is found by matching the path against the app's route templates, so it
    is known even for answers given before routing (the body limit's 413).
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, route_templates: list[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.patterns = [(compile_path(path)[0], path) for path in dict.fromkeys(route_templates)]

    def _route_template(self, path: str) -> str:
        for pattern, template in self.patterns:
            if pattern.match(path):
                return template
        return UNMATCHED_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            route = self._route_template(scope["path"])
            self.metrics.observe_request(
                scope["method"], route, status, time.perf_counter() - began
            )


# --- the app --------------------------------------------------------------------------------


def _freeze_startup_heap() -> None:
    """Import what forecasts need, then move every object alive now out of the collector's way.

    Why: torch, pandas and SQLAlchemy leave about a million long-lived objects, and each full
    (oldest-generation) collection walked all of them: a 150-200 ms pause of every request in
    flight, every few seconds under load (p99 176 ms against p50 34 ms with 20 clients).
    Frozen objects are never collected or walked; they were never going to be freed anyway.
    Once per process: later apps (tests build many) stay collectable.
    """
    global _heap_frozen
    if _heap_frozen:
        return
    import stock_lstm.models.lstm  # noqa: F401  (torch: imported on the first forecast anyway)

    gc.collect()
    gc.freeze()
    _heap_frozen = True


_heap_frozen = False


def _reconcile_runs(ctx: AppContext) -> None:
    """Runs a killed server left ``running`` (no HTML, forever) are marked failed and their
    notebooks rendered; see ``pipeline.run_recovery``."""
    from stock_lstm.pipeline.run_index import build_index
    from stock_lstm.pipeline.run_recovery import reconcile_runs

    reports_dir = Path(ctx.settings.reports_dir).resolve()
    marked = reconcile_runs(reports_dir)
    if marked:
        log.warning("marked %d interrupted run(s) failed", len(marked))
        build_index(reports_dir, ctx.settings.database_url)


def create_app(
    settings: Settings | None = None,
    *,
    context: AppContext | None = None,
    run_training: RunTraining | None = None,
) -> FastAPI:
    """Build the API for ``context`` (or a new one from ``settings``, default: environment).

    ``run_training(ctx, task)`` runs one training job to the end; by default the train
    notebook through the pipeline runner (``run_notebook_training``). Tests inject an
    in-process fake. Serve with a single worker process: the training pool and the
    one-job-per-ticker rule live in this process.
    """
    owns_context = context is None
    ctx = context or AppContext.create(settings)
    metrics = ApiMetrics(max_ticker_labels=ctx.settings.metrics_ticker_labels)
    metrics.count_active_models_with(lambda: registry.count_active(ctx.db))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _freeze_startup_heap()
        # Jobs whose process died (a killed server, a kill -9'd kernel) and jobs without an
        # owner would block their ticker's next training forever; live owners keep theirs.
        interrupted = jobs.reconcile_jobs(ctx.db, include_unowned=True, clock=ctx.clock)
        if interrupted:
            log.warning("marked %d interrupted training job(s) failed", len(interrupted))
        _reconcile_runs(ctx)
        # A Dask cluster's when STOCK_LSTM_DASK_SCHEDULER is set, else a local thread pool.
        pool = make_training_pool(ctx, metrics, run_training)
        app.state.training_pool = pool
        try:
            yield
        finally:
            app.state.training_pool = None
            pool.shutdown()
            if owns_context:
                ctx.db.dispose()

    # FastAPIOffline serves Swagger UI from files in its package: /docs works with no network
    # (FastAPI's own pages load their scripts from a CDN and stay blank offline). No /redoc:
    # its bundled script still fetches a logo from cdn.redoc.ly, and /docs shows the same.
    app = FastAPIOffline(
        redoc_url=None,
        title="stock-lstm",
        version=__version__,
        description="Daily stock close forecasts from per-ticker LSTM models, always reported "
        "beside the persistence baseline (tomorrow = today). Train with POST "
        f"{API_PREFIX}/training/start, then predict with POST {API_PREFIX}/predict. When the "
        "server has STOCK_LSTM_API_TOKEN set, state-changing endpoints need "
        "`Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.state.metrics = metrics
    app.state.auth_failures = AuthFailureLimiter()
    app.state.training_pool = None

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StockLSTMError, _stock_lstm_error)
    app.add_exception_handler(Exception, _unexpected_error)

    included = [("", routes.health.router)] + [
        (API_PREFIX, module.router)
        for module in (routes.training, routes.models, routes.predict, routes.cache, routes.reports)
    ]
    for prefix, router in included:
        app.include_router(router, prefix=prefix)
    templates = [path for route in app.router.routes if (path := getattr(route, "path", None))]
    templates += [prefix + route.path for prefix, router in included for route in router.routes]

    # Added last = outermost: the metrics see the body limit's 413s and the guards' refusals
    # too; the guards answer before a body is read.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(
        RequestGuardMiddleware,
        token=ctx.settings.api_token,
        allowed_hosts=ctx.settings.allowed_hosts,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, route_templates=templates)
    return app
