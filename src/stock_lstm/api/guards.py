"""Request guards that run before routing: text the database cannot store, foreign hosts and
origins, non-JSON bodies; and who may read server details in error texts.

Why before routing: a NUL byte in a path id reached PostgreSQL (which refuses it: a 500), and
without a token any web page the user visits could drive a loopback server (a cross-site
``POST .../activate`` with ``Content-Type: text/plain``, or DNS rebinding that makes the page's
own host name point at 127.0.0.1). Refusing those requests here keeps every route safe,
including routes added later.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

#: Methods that change state: a browser sends these cross-site without asking (CSRF).
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Host names a loopback server answers to without being configured.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


async def send_refusal(send: Send, status: int, detail: str) -> None:
    """A JSON ``{"detail": ...}`` answer that closes the connection (the body was not read)."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- text the database cannot hold ----------------------------------------------------------


def has_control_character(text: str | bytes) -> bool:
    """True if ``text`` holds a C0 control character or DEL (NUL among them).

    No id, ticker or filter the API accepts contains one, and PostgreSQL refuses NUL in text
    outright; refusing them all up front is simpler than proving each query safe.
    """
    codes = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return any(code < 0x20 or code == 0x7F for code in codes)


def control_character_problem(scope: Scope) -> str | None:
    """Why the request's path or query string cannot be served, or None if it can."""
    if has_control_character(scope.get("path", "")):
        return (
            "the request path holds a control character (e.g. a NUL byte, %00): ids and "
            "tickers are letters, digits and . _ - only"
        )
    query = scope.get("query_string", b"")
    if query and has_control_character(unquote_to_bytes(query.replace(b"+", b" "))):
        return "the query string holds a control character (e.g. a NUL byte, %00): remove it"
    return None


# --- Host and Origin ------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPort:
    """A host name (lower case, IPv6 without brackets) and a port (None: not given)."""

    host: str
    port: int | None

    @classmethod
    def parse(cls, netloc: str) -> HostPort | None:
        """``name``, ``name:port``, ``[v6]`` or ``[v6]:port``; None when malformed."""
        try:
            parts = urlsplit(f"//{netloc.strip()}")
            port = parts.port
        except ValueError:
            return None
        host = (parts.hostname or "").lower()
        if not host or parts.username is not None or parts.path or parts.query:
            return None
        return cls(host, port)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _server_address(scope: Scope) -> tuple[str | None, int | None]:
    server = scope.get("server")
    if not server:
        return None, None
    host, port = server[0], server[1] if len(server) > 1 else None
    return (str(host).lower() if host else None), port


def host_is_allowed(host: HostPort, scope: Scope, allowed: Iterable[str]) -> bool:
    """The bound address (loopback names, or the address the connection arrived on) with the
    bound port, or a configured allowed host (``name``: any port, ``name:port``: that one).

    A rebinding page's own host name is none of these, so its requests never reach a route.
    """
    for entry in allowed:
        wanted = HostPort.parse(entry)
        if wanted and wanted.host == host.host and wanted.port in (None, host.port):
            return True
    bound_host, bound_port = _server_address(scope)
    if host.host not in LOOPBACK_NAMES and host.host != bound_host:
        return False
    scheme_port = _DEFAULT_PORTS.get(scope.get("scheme", "http"))
    return bound_port is None or (host.port or scheme_port) == bound_port


def origin_matches(origin: str, host: HostPort, scheme: str) -> bool:
    """True when ``origin`` is this server as the browser addressed it (same host and port)."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in _DEFAULT_PORTS:
        return False  # "null" (sandboxed pages, file://) and anything stranger
    claimed = HostPort.parse(parts.netloc)
    if claimed is None:
        return False
    default = _DEFAULT_PORTS.get(scheme, 80)
    return claimed.host == host.host and (claimed.port or _DEFAULT_PORTS[parts.scheme]) == (
        host.port or default
    )


def host_origin_problem(scope: Scope, allowed: Iterable[str]) -> tuple[int, str] | None:
    """(status, detail) when the Host or Origin says the request must be refused, else None."""
    raw_host = _header(scope, b"host")
    host = HostPort.parse(raw_host) if raw_host else None
    if host is None or not host_is_allowed(host, scope, allowed):
        return 400, (
            f"the Host header {raw_host!r:.80} is not this server's address: the API "
            "answers only to 127.0.0.1, localhost, [::1], the address it listens on and the "
            "hosts in STOCK_LSTM_ALLOWED_HOSTS"
        )
    origin = _header(scope, b"origin")
    if scope.get("method") not in STATE_CHANGING_METHODS or origin is None:
        return None  # reads are harmless cross-site (the page cannot read the answer)
    if origin_matches(origin, host, scope.get("scheme", "http")):
        return None
    return 403, (
        f"cross-site request refused: Origin {origin!r:.80} is not this server; a page of "
        "another site cannot change state here (call the API directly, or set "
        "STOCK_LSTM_API_TOKEN and send it)"
    )


# --- JSON bodies ----------------------------------------------------------------------------


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def content_type_problem(scope: Scope) -> str | None:
    """Why a state-changing request's body is refused (every body the API takes is JSON)."""
    if scope.get("method") not in STATE_CHANGING_METHODS:
        return None
    length = _header(scope, b"content-length")
    has_body = _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )
    if not has_body or _is_json(_header(scope, b"content-type")):
        return None
    return "the request body must be JSON: send it with `Content-Type: application/json`"


class RequestGuardMiddleware:
    """Refuse, before routing: control characters in the path or query (400); a foreign
    Host (400) or a state-changing request from a foreign Origin (403); a state-changing
    request whose body is not declared JSON (415).

    With a token too: the token protects state, the Host check protects every GET against
    DNS rebinding (a page whose own name resolves to this server reads what the server
    answers); a server behind a proxy or a DNS name lists it in STOCK_LSTM_ALLOWED_HOSTS.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = tuple(allowed_hosts)

    def problem(self, scope: Scope) -> tuple[int, str] | None:
        """The first reason to refuse ``scope``, as (status, detail), or None."""
        text = control_character_problem(scope)
        if text:
            return 400, text
        refused = host_origin_problem(scope, self.allowed_hosts)
        if refused:
            return refused
        body = content_type_problem(scope)
        return (415, body) if body else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.problem(scope)
            if refused:
                await send_refusal(send, *refused)
                return
        await self.app(scope, receive, send)


# --- guessing the token ---------------------------------------------------------------------


class AuthFailureLimiter:
    """Wrong tokens per client: after ``max_failures`` within ``window_seconds`` a client's
    further attempts are refused (429 with Retry-After) without being checked, until its
    oldest failure leaves the window. A guesser gets ten tries a minute instead of a thousand
    a second; a client that sends the right token is never slowed. At most ``max_clients``
    are remembered (the least recently failing are forgotten), so spoofed sources cannot
    fill the memory."""

    def __init__(
        self,
        max_failures: int = 10,
        window_seconds: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and now - times[0] >= self.window_seconds:
            times.popleft()
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or ``None`` when it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                return None
            return max(1, math.ceil(self.window_seconds - (now - times[0])))

    def failed(self, client: str) -> None:
        """Count one wrong token from ``client``."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)


# --- who may read server details ------------------------------------------------------------


def _bearer_token(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def arrived_from_outside(scope: Scope) -> bool:
    """True when the connection came in on a non-loopback address of this host.

    ASGI servers give IP addresses; an in-process client (tests) or a Unix socket gives none,
    and such a client is as local as a loopback one.
    """
    host, _port = _server_address(scope)
    try:
        return not ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


def may_see_server_details(scope: Scope, token: str | None) -> bool:
    """Whether error texts may name server folders, files and database errors.

    With a token: only for a request that carries it. Without one: only on a loopback
    connection, where every client is a local user who could read the server log anyway
    (a server exposed with ``--insecure`` answers with the generic text).
    """
    if token:
        sent = _bearer_token(scope)
        return sent is not None and hmac.compare_digest(sent.encode(), token.encode())
    return not arrived_from_outside(scope)
