"""Tests for megasim.model.fake_server: a real HTTP server on 127.0.0.1, real clients."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from megasim.model.fake_server import FakeServer, fake_guess

MESSAGES = [{"role": "user", "content": "Guess a number between 0 and 100."}]
CHAT = {"model": "m", "messages": MESSAGES}


def _openai(server: FakeServer, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key="unused", max_retries=0, timeout=timeout
    )


def test_health_models_stats_and_404_from_sync_code() -> None:
    with FakeServer(model="served") as server:
        assert server.running
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with httpx.Client() as client:
            assert client.get(f"{server.url}/health").json() == {"status": "ok"}
            assert client.get(f"{server.base_url}/health").status_code == 200
            models = client.get(f"{server.base_url}/models").json()
            assert models["data"][0]["id"] == "served"
            missing = client.get(f"{server.url}/nope")
            assert missing.status_code == 404
            assert "error" in missing.json()
            assert client.get(f"{server.base_url}/chat/completions").status_code == 405
            stats = client.get(f"{server.url}/stats").json()
        assert stats["counts"]["health"] == 2
        assert stats["counts"]["not_found"] == 1
        assert server.requests == 0  # no chat completion yet
    assert not server.running


async def test_openai_client_gets_n_structured_choices_seeded_and_usage() -> None:
    async with FakeServer() as server:
        client = _openai(server)
        try:
            first = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,  # type: ignore[arg-type]
                seed=42,
                n=3,
                response_format={"type": "json_object"},
            )
            again = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,  # type: ignore[arg-type]
                seed=42,
                n=1,
                response_format={"type": "json_object"},
            )
        finally:
            await client.close()
    assert [c.index for c in first.choices] == [0, 1, 2]
    guesses = [json.loads(c.message.content or "")["guess"] for c in first.choices]
    assert guesses == [fake_guess(42, i) for i in range(3)]
    assert all(0 <= g <= 100 for g in guesses)
    assert len(set(guesses)) == 3  # each choice its own number
    assert json.loads(again.choices[0].message.content or "")["guess"] == guesses[0]
    assert first.usage is not None
    assert first.usage.prompt_tokens > 0
    assert first.usage.completion_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert server.counts["ok"] == 2


async def test_prose_answer_without_response_format() -> None:
    async with FakeServer() as server, httpx.AsyncClient() as client:
        response = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
    content = response.json()["choices"][0]["message"]["content"]
    assert content.startswith("My guess is ")
    float(content.removeprefix("My guess is ").rstrip("."))


async def test_slots_queue_extra_requests_and_record_max_concurrency() -> None:
    async with FakeServer(latency_s=0.1, slots=3) as server, httpx.AsyncClient() as client:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.post(f"{server.base_url}/chat/completions", json=CHAT) for _ in range(9))
        )
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in responses)
    assert server.max_concurrency == 3
    assert server.in_flight == server.queued == 0
    assert elapsed >= 0.29  # three waves of 0.1 s
    assert server.counts["ok"] == server.requests == 9


async def test_unlimited_slots_process_everything_at_once() -> None:
    async with FakeServer(latency_s=0.1) as server, httpx.AsyncClient() as client:
        await asyncio.gather(
            *(client.post(f"{server.base_url}/chat/completions", json=CHAT) for _ in range(8))
        )
    assert server.max_concurrency == 8


async def test_scripted_failures_status_headers_and_counts() -> None:
    script = ["500", "503", "429", "malformed", "ok"]
    async with (
        FakeServer(script=script, retry_after_s=2) as server,
        httpx.AsyncClient() as client,
    ):
        responses = [
            await client.post(f"{server.base_url}/chat/completions", json=CHAT) for _ in script
        ]
    assert [r.status_code for r in responses] == [500, 503, 429, 200, 200]
    assert responses[2].headers["retry-after"] == "2"
    assert "retry-after" not in responses[0].headers
    with pytest.raises(json.JSONDecodeError):
        json.loads(responses[3].content)
    assert responses[4].json()["choices"]
    assert server.requests == 5
    for outcome in ("500", "503", "429", "malformed", "ok"):
        assert server.counts[outcome] == 1


async def test_fractional_retry_after() -> None:
    async with (
        FakeServer(fail_429=1.0, retry_after_s=0.25) as server,
        httpx.AsyncClient() as client,
    ):
        response = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
    assert response.headers["retry-after"] == "0.25"


async def test_failure_rates_are_seeded_and_counts_add_up() -> None:
    rates = {"fail_500": 0.1, "fail_503": 0.1, "fail_429": 0.1, "malformed": 0.1}

    async def outcomes(seed: int) -> list[int]:
        async with (
            FakeServer(rng_seed=seed, retry_after_s=0, **rates) as server,
            httpx.AsyncClient() as client,
        ):
            statuses = [
                (await client.post(f"{server.base_url}/chat/completions", json=CHAT)).status_code
                for _ in range(200)
            ]
            counts = server.counts
        assert counts["requests"] == 200
        assert sum(counts[o] for o in ("ok", "500", "503", "429", "malformed")) == 200
        assert statuses.count(500) == counts["500"]
        assert statuses.count(429) == counts["429"]
        for outcome in ("500", "503", "429", "malformed"):
            assert 5 <= counts[outcome] <= 40  # about 20 each
        return statuses

    first = await outcomes(1)
    assert await outcomes(1) == first
    assert await outcomes(2) != first


async def test_hung_request_never_answers_but_the_server_keeps_serving() -> None:
    async with FakeServer(script=["hang"]) as server, httpx.AsyncClient() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{server.base_url}/chat/completions", json=CHAT, timeout=0.2)
        ok = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
    assert ok.status_code == 200
    assert server.counts["hang"] == 1
    assert server.counts["ok"] == 1


async def test_truncated_body_is_a_protocol_error_and_the_server_keeps_serving() -> None:
    """Content-Length announces the whole answer, half is sent, the connection closes."""
    async with FakeServer(script=["truncated"]) as server, httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{server.base_url}/chat/completions", json=CHAT)
        ok = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
    assert ok.status_code == 200
    assert server.counts["truncated"] == server.counts["ok"] == 1
    assert server.counts["connections"] == 2  # the cut connection is not reused


async def test_truncated_body_reaches_the_openai_client_as_a_connection_error() -> None:
    async with FakeServer(truncated=1.0) as server:
        client = _openai(server)
        try:
            with pytest.raises(openai.APIConnectionError):
                await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        finally:
            await client.close()
    assert server.counts["truncated"] == 1


async def test_client_closing_abandons_its_request_and_frees_the_slot() -> None:
    async with FakeServer(latency_s=5, slots=1) as server, httpx.AsyncClient() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{server.base_url}/chat/completions", json=CHAT, timeout=0.2)
        deadline = time.monotonic() + 2
        while server.counts["abandoned"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert server.counts["abandoned"] == 1
        assert server.in_flight == server.queued == 0
        server.latency_s = 0
        ok = await client.post(f"{server.base_url}/chat/completions", json=CHAT, timeout=2)
    assert ok.status_code == 200  # the slot was given back


async def test_stop_drops_hung_connections() -> None:
    server = await FakeServer(hang=1.0).start()
    async with httpx.AsyncClient() as client:
        pending = asyncio.create_task(
            client.post(f"{server.base_url}/chat/completions", json=CHAT, timeout=10)
        )
        while server.counts["hang"] == 0:
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        await server.stop()
        with pytest.raises(httpx.TransportError):
            await pending
    assert time.perf_counter() - started < 2


async def test_keep_alive_reuses_one_connection() -> None:
    async with FakeServer() as server, httpx.AsyncClient() as client:
        for _ in range(5):
            response = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
            assert "close" not in response.headers.get("connection", "")
    assert server.counts["connections"] == 1
    assert server.requests == 5


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http10_and_connection_close_end_the_connection() -> None:
    with FakeServer() as server:
        answer = _raw(server.port, b"GET /health HTTP/1.0\r\n\r\n")  # recv returns at close
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert b"connection: close" in answer.lower()
        body = json.dumps(CHAT).encode()
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = _raw(server.port, request)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert b'"choices"' in answer


def test_invalid_requests_get_400() -> None:
    with FakeServer() as server, httpx.Client() as client:
        url = f"{server.base_url}/chat/completions"
        assert client.post(url, content=b"{not json").status_code == 400
        assert client.post(url, json={"model": "m"}).status_code == 400
        assert client.post(url, json={"model": "m", "messages": []}).status_code == 400
        chunked = client.post(url, content=iter([b'{"messages": []}']))  # no Content-Length
        assert chunked.status_code == 400  # a chunked body is read (then refused: no messages)
        assert server.counts["bad_request"] == 4
        garbage = _raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400")


async def test_stop_then_start_serves_on_the_same_port() -> None:
    server = await FakeServer().start()
    port = server.port
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{server.url}/health")).status_code == 200
        await server.stop()
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{server.url}/health")
        await server.start()
        try:
            assert server.port == port
            assert (await client.get(f"{server.url}/health")).status_code == 200
        finally:
            await server.stop()
    with pytest.raises(RuntimeError, match="already running"):
        async with server:
            await server.start()


def test_unknown_script_outcome_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown outcome 'boom'"):
        FakeServer(script=["ok", "boom"])


def test_command_line_server() -> None:
    command = [sys.executable, "-m", "megasim.model.fake_server", "--port", "0"]
    command += ["--slots", "2", "--latency", "0.01", "--fail-500", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        response = httpx.post(f"{base_url}/chat/completions", json=CHAT, timeout=5)
        assert response.status_code == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["counts"]["ok"] == 1
    assert stats["max_concurrency"] == 1


def test_non_loopback_host_requires_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        FakeServer(host="0.0.0.0")


async def test_token_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    from megasim.model.base import ChatMessage, ChatRequest
    from megasim.model.openai_backend import OpenAIModel

    async with FakeServer(token="s3cret") as server:
        monkeypatch.setenv("FAKE_KEY", "wrong")
        bad = OpenAIModel("b", server.base_url, "m", api_key_env="FAKE_KEY")
        response = await bad.complete(ChatRequest((ChatMessage("user", "q"),)))
        assert response.error is not None
        assert "401" in response.error
        await bad.aclose()
        monkeypatch.setenv("FAKE_KEY", "s3cret")
        good = OpenAIModel("g", server.base_url, "m", api_key_env="FAKE_KEY")
        assert (await good.complete(ChatRequest((ChatMessage("user", "q"),)))).ok
        await good.aclose()
        assert server.counts["unauthorized"] == 1
