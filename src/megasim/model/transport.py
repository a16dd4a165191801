"""A lean HTTP/1.1 transport for the openai client, for plain-HTTP model servers.

Why: at hundreds of calls in flight the default transport (httpcore's connection pool,
h11, anyio streams) costs about 0.9 ms of CPU per call, half of the client's time, and
on a 2-core machine that CPU is what limits throughput against a fast server (see
docs/benchmarks.md, "Saturation"). This transport keeps a FIFO of idle keep-alive
connections per host (O(1) per call), writes each request in one ``write`` and reads the
answer with asyncio streams.

Scope: ``http://`` only (``https://`` endpoints keep httpx's transport), no proxies,
HTTP/1.1 with Content-Length or chunked bodies, or bodies that end with the connection;
answers are read whole (no streaming). Timeouts: ``connect``, ``pool``, and ``read``,
which bounds the whole answer (httpx bounds each read); writes are buffered.
It raises httpx2's exceptions (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``,
``PoolTimeout``...), which the openai client maps to ``APIConnectionError`` and
``APITimeoutError`` as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import httpx2

_MAX_HEAD = 65_536


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        """Still open (the server has not closed it while idle) and not idle for longer
        than ``expiry``."""
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and now - self.idle_since < expiry
        )

    def close(self) -> None:
        self.writer.close()


class FastHTTPTransport(httpx2.AsyncBaseTransport):
    """At most ``max_connections`` connections per host; callers beyond wait (FIFO) up to
    the request's pool timeout. Idle connections expire after ``keepalive_expiry`` s."""

    def __init__(self, max_connections: int = 100, keepalive_expiry: float = 5.0) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx2.UnsupportedProtocol(
                f"FastHTTPTransport serves http:// only, not {url.scheme}://", request=request
            )
        if self._closed:
            raise httpx2.ConnectError("the transport is closed", request=request)
        host = url.host
        port = url.port or 80
        key = (host, port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.max_connections)
            self._idle[key] = deque()
        try:
            await asyncio.wait_for(slots.acquire(), timeouts.get("pool"))
        except TimeoutError:
            raise httpx2.PoolTimeout("no free connection in time", request=request) from None
        try:
            return await self._send(request, key, timeouts)
        finally:
            slots.release()

    async def _send(
        self, request: httpx2.Request, key: tuple[str, int], timeouts: dict[str, float | None]
    ) -> httpx2.Response:
        idle = self._idle[key]
        now = time.monotonic()
        connection: _Connection | None = None
        while idle:
            candidate = idle.pop()  # most recently used: the likeliest to be alive
            if candidate.usable(now, self.keepalive_expiry):
                connection = candidate
                break
            self._discard(candidate)
        if connection is None:
            connection = await self._connect(request, key, timeouts.get("connect"))
        try:
            body = request.content
        except httpx2.RequestNotRead:
            body = await request.aread()
        head = _request_head(request, key, len(body))
        try:
            connection.writer.write(head + body)
            status, headers, content, keep_alive = await asyncio.wait_for(
                _read_response(connection.reader, request.method), timeouts.get("read")
            )
        except TimeoutError:
            self._discard(connection)
            raise httpx2.ReadTimeout("timed out waiting for the answer", request=request) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self._discard(connection)
            message = "Server disconnected without sending a response."
            if isinstance(exc, OSError):
                raise httpx2.ReadError(str(exc) or message, request=request) from exc
            raise httpx2.RemoteProtocolError(message, request=request) from exc
        except _ProtocolError as exc:
            self._discard(connection)
            raise httpx2.RemoteProtocolError(str(exc), request=request) from exc
        except BaseException:  # cancelled mid-request: the connection's state is unknown
            self._discard(connection)
            raise
        if keep_alive and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle[key].append(connection)
        else:
            self._discard(connection)
        return httpx2.Response(status, headers=headers, content=content, request=request)

    async def _connect(
        self, request: httpx2.Request, key: tuple[str, int], timeout: float | None
    ) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(key[0], key[1], limit=_MAX_HEAD), timeout
            )
        except TimeoutError:
            raise httpx2.ConnectTimeout("timed out connecting", request=request) from None
        except OSError as exc:
            raise httpx2.ConnectError(f"{exc.strerror or exc}", request=request) from exc
        connection = _Connection(reader, writer)
        self._open.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        self._open.discard(connection)
        connection.close()

    async def aclose(self) -> None:
        self._closed = True
        for connection in list(self._open):
            self._discard(connection)
        for idle in self._idle.values():
            idle.clear()


class _ProtocolError(Exception):
    pass


def _request_head(request: httpx2.Request, key: tuple[str, int], length: int) -> bytes:
    target = request.url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1"]
    has_host = False
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered in ("content-length", "transfer-encoding", "connection"):
            continue
        if lowered == "host":
            has_host = True
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.append(f"Host: {key[0]}:{key[1]}")
    if length or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_response(
    reader: asyncio.StreamReader, method: str
) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise _ProtocolError(f"bad status line {lines[0][:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise _ProtocolError(f"bad status line {lines[0][:80]!r}") from None
        if status >= 200 or status == 101:
            break  # 1xx (100 Continue) heads are skipped
    headers: list[tuple[str, str]] = []
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        value = value.strip()
        headers.append((name.strip(), value))
        fields[name.strip().lower()] = value
    connection = fields.get("connection", "").lower()
    keep_alive = connection != "close" if parts[0] == "HTTP/1.1" else connection == "keep-alive"
    if method == "HEAD" or status in (204, 304):
        return status, headers, b"", keep_alive
    if "chunked" in fields.get("transfer-encoding", "").lower():
        content = await _read_chunked(reader)
        headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
    elif "content-length" in fields:
        try:
            length = int(fields["content-length"])
        except ValueError:
            raise _ProtocolError("bad Content-Length") from None
        content = await reader.readexactly(length)
    else:  # the body ends with the connection
        content = await reader.read()
        keep_alive = False
    return status, headers, content, keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _ProtocolError("bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
