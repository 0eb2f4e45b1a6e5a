"""Run the API with uvicorn, refusing to expose unauthenticated writes by accident."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from stock_lstm.config import Settings
from stock_lstm.errors import StockLSTMError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, insecure: bool, settings: Settings) -> None:
    """Refuse a non-loopback ``host`` without ``STOCK_LSTM_API_TOKEN`` unless ``insecure``.

    Without a token anyone who can reach the port could train, activate or delete; that is
    fine on loopback, and must be an explicit choice anywhere else.
    """
    if is_loopback(host) or settings.api_token:
        return
    if insecure:
        log.warning(
            "serving on %s without STOCK_LSTM_API_TOKEN: anyone who reaches the port can "
            "train, activate models and delete cached prices; requests are answered only when "
            "addressed to this machine's IP or a name in STOCK_LSTM_ALLOWED_HOSTS",
            host,
        )
        return
    raise StockLSTMError(
        f"refusing to serve on {host} without a token: set STOCK_LSTM_API_TOKEN (clients then "
        "send `Authorization: Bearer <token>`), listen on 127.0.0.1, or pass --insecure if the "
        "network is trusted"
    )


def server_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn options that bound what clients can hold: connections and requests in flight
    (503 beyond), idle keep-alive time, and each request head's time and size."""
    from stock_lstm.api.protocol import MAX_HEAD_BYTES, guarded_protocol

    return {
        "limit_concurrency": settings.api_concurrency_limit,
        "timeout_keep_alive": settings.api_keep_alive_seconds,
        "http": guarded_protocol(settings.api_header_timeout_seconds),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,  # if h11 is ever chosen instead
    }


def serve(host: str, port: int, *, insecure: bool, settings: Settings) -> None:
    """Check the exposure rule, then serve ``create_app(settings)`` until interrupted.

    One process only: the training pool and the one-job-per-ticker rule live in it.
    """
    check_exposure(host, insecure=insecure, settings=settings)
    import uvicorn

    from stock_lstm.api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        workers=1,
        log_level="info",
        **server_limits(settings),
    )
