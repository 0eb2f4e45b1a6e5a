"""uvicorn's HTTP protocol with deadlines on each request's head and body, a size limit on the
head, and a cap on one client's connections.

Why: uvicorn has no header timeout. A client that opens a connection and sends nothing, or
one header byte every few seconds (slowloris), holds a connection slot for ever, and with a
concurrency limit a few dozen of them lock everyone out. ``timeout_keep_alive`` only starts
after a response. Here the request line and headers must be complete within
``header_timeout`` seconds of the connection opening (or of the next request's first byte),
and at most ``max_head_bytes`` long (httptools has no limit of its own), or the connection
is closed. The C parser (httptools) stays: it was a third of the served time when it was not
used (docs/benchmarks.md).

The body has its own deadline (``body_timeout`` from the end of the head): 99 connections
that declared ``Content-Length: 60000`` and sent a byte every 5 s held every slot for as long
as they liked, and ``/health`` was a 503. And one client address may hold at most
``max_per_client`` connections (more are closed at once), so a single host cannot take all
of ``limit_concurrency`` from the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

#: The longest request line plus headers accepted; real requests are well under 2 KiB.
MAX_HEAD_BYTES = 32 * 1024


def _too_many_connections(limit: int) -> bytes:
    """The whole answer to a connection over the per-client cap, sent before closing it (the
    request is not read: a client reads this as the response to whatever it sent)."""
    detail = (
        f"this address already holds {limit} connections to the server "
        "(STOCK_LSTM_API_CONNECTIONS_PER_CLIENT): close idle ones and retry"
    )
    body = json.dumps({"detail": detail}).encode()
    head = (
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
        f"retry-after: 5\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class RequestHeadTooLarge(Exception):
    """Raised inside the parser's callback: httptools turns it into a parser error, which
    uvicorn answers with 400 and a closed connection."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose request heads have a deadline and a size limit."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_head_bytes: int = MAX_HEAD_BYTES
    max_per_client: int = 32
    #: Open connections by client address, shared by every connection of one server.
    open_by_client: ClassVar[dict[str, int]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._peer: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = self.client[0] if self.client else None
        if self._peer is not None:
            count = self.open_by_client.get(self._peer, 0) + 1
            self.open_by_client[self._peer] = count
            if count > self.max_per_client:
                log.info("refusing a connection: %s holds %d already", self._peer, count - 1)
                transport.write(_too_many_connections(self.max_per_client))
                transport.close()
                return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        self._body_arrived()
        if self._peer is not None:
            left = self.open_by_client.get(self._peer, 1) - 1
            if left > 0:
                self.open_by_client[self._peer] = left
            else:
                self.open_by_client.pop(self._peer, None)
            self._peer = None
        super().connection_lost(exc)

    def on_message_complete(self) -> None:
        self._body_arrived()
        super().on_message_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._await_head()  # a keep-alive connection's next request: its own deadline

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_arrived()
        if self._body_deadline is None:
            self._body_deadline = self.loop.call_later(self.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            raise RequestHeadTooLarge(f"request head over {self.max_head_bytes} bytes")

    def _await_head(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request head took over %ss", self.header_timeout)
            self.transport.close()

    def _body_arrived(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request body took over %ss", self.body_timeout)
            self.transport.close()


def guarded_protocol(
    header_timeout: float,
    max_head_bytes: int = MAX_HEAD_BYTES,
    *,
    body_timeout: float = 10.0,
    max_per_client: int = 32,
) -> type:
    """A ``GuardedHttpToolsProtocol`` subclass with these limits, for ``uvicorn.run(http=...)``
    (its own count of connections by client)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_head_bytes": max_head_bytes,
            "max_per_client": max_per_client,
            "open_by_client": {},
        },
    )
