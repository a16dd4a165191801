"""Tests for megasim.model.openai_backend against a real OpenAI-compatible HTTP server.

The server is llama.cpp's own (through xllamacpp) serving the bundled SmolLM2 on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelClient, ModelError
from megasim.model.local import bundled_model_path
from megasim.model.openai_backend import OpenAIModel
from megasim.model.parsing import parse_guess
from megasim.model.retry import RetryingModel

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "object",
    "properties": {"guess": {"type": "number"}},
    "required": ["guess"],
}
HELLO = ChatRequest(messages=(ChatMessage("user", "Say hello."),), max_tokens=8, seed=1)
GUESS = ChatRequest(
    messages=(
        ChatMessage("system", "You play a number game. Answer in JSON."),
        ChatMessage("user", 'Guess a number between 0 and 100. Reply as {"guess": <number>}.'),
    ),
    max_tokens=40,
    temperature=0.0,
    seed=1,
    json_schema=SCHEMA,
)
FAST_RETRY = {"initial_s": 0.001, "max_s": 0.01}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a llama.cpp server, ready to answer."""
    xllamacpp = pytest.importorskip("xllamacpp")
    port = _free_port()
    params = xllamacpp.CommonParams()
    params.model.path = str(bundled_model_path())
    params.n_parallel = 2
    params.n_ctx = 2048
    params.verbosity = -1
    params.port = port
    params.hostnames = ["127.0.0.1"]
    server = xllamacpp.Server(params)
    try:
        url = f"http://127.0.0.1:{port}"
        assert server.listening_address == url
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server at {url} never became healthy")
            time.sleep(0.05)
        yield url
    finally:
        del server
        gc.collect()


def _model(url: str, **kwargs: Any) -> OpenAIModel:
    options: dict[str, Any] = {"name": "x", "model": "smollm2", "api_key_env": None}
    options.update(kwargs)
    return OpenAIModel(base_url=url, **options)


class Counting:
    """Counts calls to a wrapped client, to see what the retry wrapper does."""

    def __init__(self, inner: OpenAIModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.immediate = inner.immediate
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_answers_with_text_and_usage(server_url: str) -> None:
    model = _model(f"{server_url}/v1")
    assert isinstance(model, ModelClient)
    assert model.immediate is False
    try:
        response = await model.complete(HELLO)
    finally:
        await model.aclose()
    assert response.ok, response.error
    assert response.model == "x"
    assert response.text.strip()
    assert response.tokens_in > 0
    assert 0 < response.tokens_out <= 8
    assert response.latency_s > 0


async def test_structured_output_through_response_format(server_url: str) -> None:
    model = _model(f"{server_url}/v1")
    try:
        response = await model.complete(GUESS)
        again = await model.complete(GUESS)
    finally:
        await model.aclose()
    assert response.ok, response.error
    payload = json.loads(response.text)
    assert set(payload) == {"guess"}
    assert isinstance(payload["guess"], int | float)
    assert parse_guess(response.text, 0, 1e9).valid
    assert again.text == response.text  # same seed, temperature 0


async def test_structured_false_sends_no_schema_and_a_rejected_one_falls_back(
    server_url: str,
) -> None:
    request = ChatRequest(
        messages=(ChatMessage("user", "Say hello."),),
        max_tokens=8,
        seed=1,
        json_schema={"type": "bogus"},  # the server would reject this schema
    )
    plain = _model(f"{server_url}/v1", structured=False)
    structured = _model(f"{server_url}/v1")
    try:
        assert (await plain.complete(request)).ok
        assert plain.features.notes == []  # nothing was rejected: no schema was sent
        # llama.cpp rejects the schema (HTTP 400); the request falls back to json_object
        # instead of failing, and the fallback is recorded with the server's reason
        fallen_back = await structured.complete(request)
    finally:
        await plain.aclose()
        await structured.aclose()
    assert fallen_back.ok, fallen_back.error
    assert structured.features.response_format == "json_object"
    assert structured.features.notes[0].startswith("response_format json_schema -> json_object")
    assert "HTTP 400" in structured.features.notes[0]


async def test_max_tokens_cap_applies(server_url: str) -> None:
    model = _model(f"{server_url}/v1", max_tokens_cap=3)
    try:
        response = await model.complete(HELLO)
    finally:
        await model.aclose()
    assert 0 < response.tokens_out <= 3


async def test_concurrent_requests_beyond_max_concurrency(server_url: str) -> None:
    model = _model(f"{server_url}/v1", max_concurrency=1)
    try:
        responses = await asyncio.gather(*(model.complete(HELLO) for _ in range(3)))
    finally:
        await model.aclose()
    assert all(r.ok and r.text and r.tokens_out > 0 for r in responses)


async def test_closed_port_raises_model_error() -> None:
    model = _model(f"http://127.0.0.1:{_free_port()}/v1", timeout_s=5)
    try:
        with pytest.raises(ModelError, match="APIConnectionError"):
            await model.complete(HELLO)
    finally:
        await model.aclose()


async def test_closed_port_with_retries_gives_error_response() -> None:
    inner = Counting(_model(f"http://127.0.0.1:{_free_port()}/v1", timeout_s=5))
    model = RetryingModel(inner, retries=1, **FAST_RETRY)
    try:
        response = await model.complete(HELLO)
    finally:
        await model.aclose()
    assert inner.calls == 2
    assert response.text == ""
    assert response.error is not None
    assert "failed after 2 attempts" in response.error
    assert "APIConnectionError" in response.error


async def test_timeout_raises_model_error(server_url: str) -> None:
    model = _model(f"{server_url}/v1", timeout_s=0.001)
    try:
        with pytest.raises(ModelError, match="Timeout"):
            await model.complete(HELLO)
    finally:
        await model.aclose()


async def test_http_404_is_an_error_response_and_not_retried(server_url: str) -> None:
    inner = Counting(_model(f"{server_url}/nope"))
    model = RetryingModel(inner, retries=3, **FAST_RETRY)
    try:
        response = await model.complete(HELLO)
    finally:
        await model.aclose()
    assert inner.calls == 1
    assert response.text == ""
    assert response.error is not None
    assert response.error.startswith("HTTP 404")
    assert response.tokens_in == response.tokens_out == 0


async def test_prompt_over_the_context_is_an_http_400_response(server_url: str) -> None:
    model = _model(f"{server_url}/v1")
    request = ChatRequest(messages=(ChatMessage("user", "hello world " * 1500),), max_tokens=4)
    try:
        response = await model.complete(request)
    finally:
        await model.aclose()
    assert response.error is not None
    assert response.error.startswith("HTTP 400")
    assert "context" in response.error
