"""Tests for megasim.model.transport.FastHTTPTransport against raw HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx2
import openai
import pytest

from megasim.model.fake_server import FakeServer
from megasim.model.transport import FastHTTPTransport

Reply = Callable[[bytes], bytes | None]  # request head + body -> raw answer (None: no answer)


class RawServer:
    """Answers each request with ``reply(request)``; counts connections; keeps requests."""

    def __init__(self, reply: Reply, close_after: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    await asyncio.sleep(3600)
                    continue
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def raw_server(reply: Reply, close_after: bool = False) -> AsyncIterator[RawServer]:
    raw = RawServer(reply, close_after)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    try:
        yield raw
    finally:
        server.close()
        for writer in raw.writers:
            writer.close()


def fixed(answer: bytes) -> Reply:
    return lambda _request: answer


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'


@asynccontextmanager
async def client(max_connections: int = 10) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=FastHTTPTransport(max_connections=max_connections), timeout=5
    ) as http:
        yield http


async def test_content_length_answer_and_keep_alive_reuse() -> None:
    async with raw_server(fixed(OK)) as server, client() as http:
        for _ in range(3):
            response = await http.post(f"{server.url}/v1/x?y=1", json={"a": 1})
            assert response.status_code == 200
            assert response.json() == {"ok": True}
    assert server.connections == 1
    first = server.requests[0].decode()
    assert first.startswith("POST /v1/x?y=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}" in first or "host: 127.0.0.1" in first.lower()
    assert "content-length: 7\r\n" in first.lower()
    assert first.endswith('{"a":1}')


async def test_chunked_answer_with_trailers() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n6;ext=1\r\n: 123}\r\n0\r\nX-Trailer: 1\r\n\r\n'
    )
    async with raw_server(fixed(answer)) as server, client() as http:
        response = await http.get(f"{server.url}/")
        again = await http.get(f"{server.url}/")
    assert response.json() == {"a": 123}
    assert "transfer-encoding" not in response.headers
    assert again.json() == {"a": 123}
    assert server.connections == 1


async def test_body_delimited_by_close_and_100_continue() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nhello"
    async with raw_server(fixed(answer), close_after=True) as server, client() as http:
        assert (await http.get(f"{server.url}/")).text == "hello"
        assert (await http.get(f"{server.url}/")).text == "hello"
    assert server.connections == 2  # not reused: the body ended with the connection


async def test_connection_close_header_is_honoured() -> None:
    answer = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    async with raw_server(fixed(answer), close_after=True) as server, client() as http:
        for _ in range(2):
            assert (await http.get(f"{server.url}/")).status_code == 204
    assert server.connections == 2


async def test_idle_connection_closed_by_the_server_is_not_reused() -> None:
    async with raw_server(fixed(OK)) as server, client() as http:
        assert (await http.get(f"{server.url}/")).status_code == 200
        for writer in server.writers:
            writer.close()
        await asyncio.sleep(0.05)
        assert (await http.get(f"{server.url}/")).status_code == 200
    assert server.connections == 2


async def test_idle_connections_expire() -> None:
    transport = FastHTTPTransport(keepalive_expiry=0.05)
    async with raw_server(fixed(OK)) as server, httpx2.AsyncClient(transport=transport) as http:
        await http.get(f"{server.url}/")
        await asyncio.sleep(0.1)
        await http.get(f"{server.url}/")
    assert server.connections == 2


async def test_max_connections_and_pool_timeout() -> None:
    async with raw_server(fixed(OK)) as server, client(max_connections=2) as http:
        responses = await asyncio.gather(*(http.get(f"{server.url}/") for _ in range(10)))
        assert all(r.status_code == 200 for r in responses)
        assert server.max_open <= 2

    async with raw_server(lambda _r: None) as silent:
        transport = FastHTTPTransport(max_connections=1)
        timeout = httpx2.Timeout(5, pool=0.1)
        async with httpx2.AsyncClient(transport=transport, timeout=timeout) as http:
            hung = asyncio.ensure_future(http.get(f"{silent.url}/"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx2.PoolTimeout):
                await http.get(f"{silent.url}/")
            hung.cancel()
            with pytest.raises(asyncio.CancelledError):
                await hung
            # the cancelled request's connection was discarded, its slot freed
            with pytest.raises(httpx2.ReadTimeout):
                await http.get(f"{silent.url}/", timeout=0.1)
        assert silent.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
)
async def test_broken_answers_are_protocol_errors(answer: bytes) -> None:
    async with raw_server(fixed(answer)) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(f"{server.url}/")


async def test_disconnect_without_answer() -> None:
    async with raw_server(fixed(b""), close_after=True) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="disconnected"):
            await http.get(f"{server.url}/")


async def test_refused_connection_and_https_and_closed_transport() -> None:
    async with raw_server(fixed(OK)) as server:
        url = server.url
    transport = FastHTTPTransport()
    async with httpx2.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get(f"{url}/")
        with pytest.raises(httpx2.UnsupportedProtocol, match="http:// only"):
            await http.get("https://127.0.0.1:1/")
    with pytest.raises(httpx2.ConnectError, match="closed"):
        await transport.handle_async_request(httpx2.Request("GET", f"{url}/"))


async def test_openai_client_sends_auth_and_maps_errors() -> None:
    async with FakeServer(script=["ok", "500", "hang"]) as server:
        raw = openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            timeout=0.5,
            http_client=openai.DefaultAsyncHttpxClient(transport=FastHTTPTransport()),
        )
        try:
            messages = [{"role": "user", "content": "hi"}]
            answer = await raw.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
            assert answer.choices[0].message.content
            with pytest.raises(openai.InternalServerError):
                await raw.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
            with pytest.raises(openai.APITimeoutError):
                await raw.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
        finally:
            await raw.close()
    async with raw_server(fixed(OK)) as capture:
        raw = openai.AsyncOpenAI(
            base_url=f"{capture.url}/v1",
            api_key="sk-test",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(transport=FastHTTPTransport()),
        )
        try:
            await raw.post("/chat/completions", body={"a": 1}, cast_to=httpx2.Response)
        finally:
            await raw.close()
    assert b"authorization: Bearer sk-test" in capture.requests[0].lower().replace(
        b"bearer", b"Bearer"
    )
