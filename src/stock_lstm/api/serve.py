"""Run the API with uvicorn, refusing to expose unauthenticated writes by accident."""

from __future__ import annotations

import ipaddress
import logging
import socket
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


#: A token guarding a server beyond loopback: at least this long, and not guessable by its
#: look (guesses are also slowed per client, ``guards.AuthFailureLimiter``).
MIN_EXPOSED_TOKEN_CHARS = 32
MIN_TOKEN_DISTINCT_CHARS = 10


def weak_token_reason(token: str) -> str | None:
    """Why ``token`` is too weak to guard a server others can reach (``None``: it is not)."""
    if len(token) < MIN_EXPOSED_TOKEN_CHARS:
        return f"it has {len(token)} characters, fewer than {MIN_EXPOSED_TOKEN_CHARS}"
    if len(set(token)) < MIN_TOKEN_DISTINCT_CHARS:
        return f"it uses only {len(set(token))} different characters"
    return None


def check_exposure(host: str, *, insecure: bool, settings: Settings) -> None:
    """Refuse a non-loopback ``host`` without ``STOCK_LSTM_API_TOKEN`` unless ``insecure``,
    and with a weak token at all.

    Without a token anyone who can reach the port could train, activate or delete; that is
    fine on loopback, and must be an explicit choice anywhere else.
    """
    if is_loopback(host):
        return
    if settings.api_token:
        reason = weak_token_reason(settings.api_token)
        if reason:
            raise StockLSTMError(
                f"refusing to serve on {host} with a weak STOCK_LSTM_API_TOKEN ({reason}): "
                f"use a random one of {MIN_EXPOSED_TOKEN_CHARS}+ characters, e.g. "
                '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
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


def check_bindable(host: str, port: int) -> None:
    """One line, before uvicorn starts, when ``host:port`` cannot be listened on (a name
    that does not resolve, a stray space, a port in use or not ours to take)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise StockLSTMError(
            f"--host {host!r} is not an address of this machine ({exc}): use 127.0.0.1, "
            "0.0.0.0 or one of its addresses"
        ) from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise StockLSTMError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another "
                "--port, or stop what uses it"
            ) from None


def server_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn options that bound what clients can hold: connections and requests in flight
    (503 beyond), connections per client, idle keep-alive time, each request head's time and
    size and each body's time."""
    from stock_lstm.api.protocol import MAX_HEAD_BYTES, guarded_protocol

    return {
        "limit_concurrency": settings.api_concurrency_limit,
        "timeout_keep_alive": settings.api_keep_alive_seconds,
        "http": guarded_protocol(
            settings.api_header_timeout_seconds,
            body_timeout=settings.api_body_timeout_seconds,
            max_per_client=settings.api_connections_per_client,
        ),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,  # if h11 is ever chosen instead
    }


def serve(host: str, port: int, *, insecure: bool, settings: Settings) -> None:
    """Check the exposure rule, then serve ``create_app(settings)`` until interrupted.

    One process only: the training pool and the one-job-per-ticker rule live in it.
    """
    check_exposure(host, insecure=insecure, settings=settings)
    check_bindable(host, port)
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
