"""Request guards that run before routing: text the database cannot store.

Why before routing: a NUL byte in a path id reached PostgreSQL (which refuses it: a 500).
Refusing it here keeps every route safe, including routes added later.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send


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


class RequestGuardMiddleware:
    """Refuse, before routing, a request whose path or query holds a control character (400)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = control_character_problem(scope)
            if problem:
                await send_refusal(send, 400, problem)
                return
        await self.app(scope, receive, send)
