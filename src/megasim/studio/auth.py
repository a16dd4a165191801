"""Token check for every route, page, asset and the live channel (an ASGI middleware).

A token may come as ``Authorization: Bearer T``, as the ``megasim_token`` cookie (set
when a page is opened with ``?token=T``, so the browser's own requests carry it), or as
``?token=T``. Compared in constant time. With no token configured (the default on
127.0.0.1) everything is open to this machine only.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "megasim_token"


def _offered(scope: Scope) -> list[str]:
    offered: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                offered.append(text[7:].strip())
        elif name == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header offers nothing
                continue
            if COOKIE in cookie:
                offered.append(cookie[COOKIE].value)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    offered.extend(query.get("token", []))
    return offered


class TokenGuard:
    """401 for any HTTP or WebSocket request without the token; sets the cookie on pages."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def allowed(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        expected = self.token.encode()
        return any(secrets.compare_digest(t.encode(), expected) for t in _offered(scope))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self.allowed(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            body = b'{"detail":"a valid token is required (Authorization: Bearer, or ?token=)"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if self.token is None or b"token=" not in scope.get("query_string", b""):
            await self.app(scope, receive, send)
            return

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, with_cookie)
