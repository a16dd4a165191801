"""The fake server's HTTP side: uvicorn's HTTP/1.1 protocol serving a starlette app.

uvicorn parses requests and writes responses (keep-alive, HTTP/1.0, chunked request
bodies, malformed requests get 400); starlette routes them. This module adds only what a
fake needs and a production server hides:

- every connection is counted and reachable, so ``close()`` drops them all at once, hung
  and queued requests included, as a crashed replica would. ``uvicorn.Server`` is not
  used: its ``serve()`` takes over the process's signal handlers and its shutdown waits
  for responses to finish (a hung request would hold it), polling every 0.1 s;
- faults below the HTTP layer, as starlette responses: ``Hang`` never answers, and
  ``Truncated`` announces a longer body than it sends, then closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

# idle keep-alive connections stay open (as the clients' pools expect): an hour
_KEEP_ALIVE_S = 3600


def error_body(message: str, code: int) -> bytes:
    """An OpenAI-style error document."""
    kind = "server_error" if code >= 500 else "invalid_request_error"
    return json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def until_disconnected(receive: Receive) -> None:
    """Wait until the client closes the connection (or the server drops it)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Hang(Response):
    """No answer at all: the request waits until the client gives up or the server stops."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await until_disconnected(receive)


class Truncated(Response):
    """A 200 whose Content-Length announces ``content`` but whose connection closes after
    half of it: a server dying mid-answer. The client sees an incomplete body."""

    def __init__(self, content: bytes, drop: Callable[[Scope], None]) -> None:
        super().__init__()
        self.content = content
        self.drop = drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = str(len(self.content)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        half = self.content[: len(self.content) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        self.drop(scope)  # the half is flushed, then the connection closes
        await until_disconnected(receive)


class _Connection(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, counting its connection for the listener."""

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(listener.config, listener.state, {}, _loop=loop)
        self.listener = listener

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.listener.on_connection()


class Listener:
    """One ASGI app served on ``host:port`` by uvicorn's protocol; ``on_connection`` is
    called for each new TCP connection."""

    def __init__(self, app: ASGIApp, on_connection: Callable[[], None]) -> None:
        self.config = Config(
            app,
            lifespan="off",
            log_config=None,  # leave the host program's logging alone
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            ws="none",
            interface="asgi3",
            timeout_keep_alive=_KEEP_ALIVE_S,
        )
        self.config.load()
        self.on_connection = on_connection
        self.state = ServerState()
        self._server: asyncio.Server | None = None

    @property
    def open_connections(self) -> int:
        return len(self.state.connections)

    async def listen(self, host: str, port: int) -> int:
        """Start accepting connections; returns the port (a free one when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self, loop), host, port, reuse_address=True, backlog=4096
        )
        port_: Any = self._server.sockets[0].getsockname()[1]
        return int(port_)

    def drop(self, scope: Scope) -> None:
        """Close the connection that ``scope``'s request came on (after what is written)."""
        for connection in list(self.state.connections):
            if isinstance(connection, H11Protocol) and connection.client == scope.get("client"):
                connection.transport.close()

    async def close(self) -> None:
        """Stop listening, drop every connection, and wait for the requests to end."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self.state.connections):
            if isinstance(connection, H11Protocol):
                connection.transport.close()  # its request sees a disconnect and ends
        await asyncio.gather(*list(self.state.tasks), return_exceptions=True)
        await server.wait_closed()
        deadline = time.monotonic() + 1.0
        while self.state.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.001)  # sockets close on the loop's next turns
