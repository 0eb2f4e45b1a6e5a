"""uvicorn's HTTP protocol with a deadline and a size limit on each request's head.

Why: uvicorn has no header timeout. A client that opens a connection and sends nothing, or
one header byte every few seconds (slowloris), holds a connection slot for ever, and with a
concurrency limit a few dozen of them lock everyone out. ``timeout_keep_alive`` only starts
after a response. Here the request line and headers must be complete within
``header_timeout`` seconds of the connection opening (or of the next request's first byte),
and at most ``max_head_bytes`` long (httptools has no limit of its own), or the connection
is closed. The C parser (httptools) stays: it was a third of the served time when it was not
used (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

#: The longest request line plus headers accepted; real requests are well under 2 KiB.
MAX_HEAD_BYTES = 32 * 1024


class RequestHeadTooLarge(Exception):
    """Raised inside the parser's callback: httptools turns it into a parser error, which
    uvicorn answers with 400 and a closed connection."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose request heads have a deadline and a size limit."""

    header_timeout: float = 10.0
    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

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


def guarded_protocol(header_timeout: float, max_head_bytes: int = MAX_HEAD_BYTES) -> type:
    """A ``GuardedHttpToolsProtocol`` subclass with these limits, for ``uvicorn.run(http=...)``."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "max_head_bytes": max_head_bytes},
    )
