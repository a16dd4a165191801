"""The fake server's HTTP/1.1 side: one protocol instance per client connection.

Enough HTTP for httpx, the openai client and curl: keep-alive, requests with a
Content-Length, one request at a time per connection, bearer-token checks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from megasim.model.fake_server import FakeServer

REASONS = {
    200: "OK",
    400: "Bad Request",
    431: "Request Header Fields Too Large",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
MAX_HEAD = 65_536
Reply = tuple[int, bytes, str]  # status, body, extra header lines


class FakeConnection(asyncio.Protocol):
    """One client connection: requests in order (keep-alive), at most one at a time.

    The client closing the connection abandons the request being processed, as real
    servers (vLLM) do, so a cancelled call does not keep a slot busy."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.hung = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        server._connections.add(self)
        server.open_connections += 1
        server.counts["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.task is None and not self.hung:
            self._next()

    def eof_received(self) -> bool:
        self.abandon()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.abandon()
        server = self.server
        if self in server._connections:
            server._connections.discard(self)
            server.open_connections -= 1

    def abandon(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def close(self) -> None:
        self.abandon()
        if self.transport is not None:
            self.transport.close()

    def _write(self, status: int, body: bytes, keep_alive: bool, extra: str = "") -> None:
        assert self.transport is not None
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        if not keep_alive:
            self.transport.close()

    def _next(self) -> None:
        """Serve the next complete request in the buffer, if there is one."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._write(431, error_body("request head too large", 431), keep_alive=False)
            return
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._write(400, error_body("bad request line", 400), keep_alive=False)
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._write(411, error_body("send a Content-Length", 411), keep_alive=False)
            return
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            self._write(400, error_body("bad Content-Length", 400), keep_alive=False)
            return
        if len(buffer) < end + 4 + length:
            return  # the body is still on its way
        body = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        path = target.split("?", 1)[0].rstrip("/")
        token = self.server.token
        if token and headers.get("authorization") != f"Bearer {token}":
            self.server.counts["unauthorized"] += 1
            self._reply((401, error_body("missing or wrong bearer token", 401), ""), keep_alive)
            return
        reply = self.server._route(method, path, body)
        if isinstance(reply, tuple):
            self._reply(reply, keep_alive)
            return
        self.task = asyncio.get_running_loop().create_task(self._serve(reply, keep_alive))

    def _reply(self, reply: Reply, keep_alive: bool) -> None:
        status, body, extra = reply
        self._write(status, body, keep_alive, extra)
        if keep_alive and self.buffer:
            self._next()

    async def _serve(self, pending: Awaitable[Reply | None], keep_alive: bool) -> None:
        try:
            reply = await pending
        except asyncio.CancelledError:
            return  # abandoned by the client, or the server stops
        finally:
            self.task = None
        if reply is None:
            self.hung = True  # never answer; the client will give up and close
            return
        self._reply(reply, keep_alive)


def error_body(message: str, code: int) -> bytes:
    kind = "server_error" if code >= 500 else "invalid_request_error"
    return json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()
