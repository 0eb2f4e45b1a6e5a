"""What the routers receive through ``Depends``: the context, metrics, pool and token check.

Everything lives on ``app.state`` (set by ``create_app``), never in module globals, so each
app (and each test) has its own database, registry of metrics and workers.

No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stock_lstm.api.guards import AuthFailureLimiter, may_see_server_details
from stock_lstm.api.training_pool import TrainingPool
from stock_lstm.errors import ModelNotFoundError
from stock_lstm.monitoring.metrics import ApiMetrics
from stock_lstm.tickers import validate_ticker
from stock_lstm.workflows import AppContext


def get_context(request: Request) -> AppContext:
    return request.app.state.context


def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


def get_pool(request: Request) -> TrainingPool:
    pool = getattr(request.app.state, "training_pool", None)
    if pool is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="training workers are not running (the server is starting or stopping): "
            "retry in a few seconds",
        )
    return pool


ContextDep = Annotated[AppContext, Depends(get_context)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
PoolDep = Annotated[TrainingPool, Depends(get_pool)]

_bearer = HTTPBearer(
    auto_error=False,
    description="The server's STOCK_LSTM_API_TOKEN; required by endpoints that change state "
    "when the server has one.",
)


def client_address(request: Request) -> str:
    """The client's address, the key of every per-client limit ("local" in-process)."""
    return request.client.host if request.client else "local"


def require_token(
    request: Request,
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Guard a state-changing endpoint when ``STOCK_LSTM_API_TOKEN`` is set (else open).

    Runs before the body is validated, so a request without the token learns nothing else
    and writes nothing. A client that sent ten wrong tokens in a minute is refused (429)
    without its next guesses being checked (``guards.AuthFailureLimiter``).
    """
    expected = context.settings.api_token
    if not expected:
        return
    limiter: AuthFailureLimiter = request.app.state.auth_failures
    client = client_address(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many wrong tokens from this client: wait {wait} s, then send the "
            "server's STOCK_LSTM_API_TOKEN",
            headers={"Retry-After": str(wait)},
        )
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="this endpoint changes state: send `Authorization: Bearer <token>` with the "
            "server's STOCK_LSTM_API_TOKEN",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        limiter.failed(client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="the bearer token is wrong: send the server's STOCK_LSTM_API_TOKEN",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


#: Add to a route's ``dependencies`` to require the token for it.
TokenRequired = Depends(require_token)


def show_server_details(request: Request, context: ContextDep) -> bool:
    """Whether this client may read error texts that name server folders, files and database
    errors (``guards.may_see_server_details``); everyone else gets a generic text, and the
    server log keeps the full one."""
    return may_see_server_details(request.scope, context.settings.api_token)


#: True when the request may see server details in error texts.
ServerDetailsDep = Annotated[bool, Depends(show_server_details)]


def ticker_path(
    ticker: Annotated[
        str, Path(description="Yahoo Finance symbol, e.g. AAPL or PETR4.SA.", examples=["AAPL"])
    ],
) -> str:
    """The path's ticker, canonical; a malformed one is a 422 (``InvalidTickerError``)."""
    return validate_ticker(ticker)


TickerPath = Annotated[str, Depends(ticker_path)]

#: The longest version or job id accepted in a path.
MAX_ID_LENGTH = 64
#: Version ids (``AAPL_20260105_120000``, ``_GSPC_...``) and job ids (hex, or a caller's
#: ``job-1``): letters, digits and ``_ . -``. Checked before any query, so text a database
#: cannot store (PostgreSQL refuses NUL) or would only search for in vain never reaches one.
ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"


def id_path(description: str) -> Any:
    """A path parameter holding a version or job id: 1-64 characters of ``ID_PATTERN``."""
    return Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description=description)


#: The ``cursor`` query parameter of a paged listing: the previous page's ``next_cursor``.
CursorQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="The previous page's next_cursor; none for the first page.",
    ),
]


def no_active_model(ticker: str) -> ModelNotFoundError:
    """The 404 for a ticker without an active model, pointing at the API's way to train one."""
    return ModelNotFoundError(
        f"no active model for {ticker}: train one with POST /api/v1/training/start "
        f'{{"ticker": "{ticker}"}} and predict when its job has completed'
    )
