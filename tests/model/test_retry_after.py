"""Retry-After: parsed from 429 answers, carried on the error, honoured by RetryingModel."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse
from megasim.model.errors import EndpointError, parse_retry_after
from megasim.model.fake_server import FakeServer, fake_guess
from megasim.model.openai_backend import OpenAIModel
from megasim.model.retry import RetryingModel

REQUEST = ChatRequest(messages=(ChatMessage("user", "guess"),), seed=1)
FAST = {"initial_s": 0.001, "max_s": 0.005}  # the backoff alone would wait milliseconds


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "whenever"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": later}, now=now) == pytest.approx(30, abs=1)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": earlier}, now=now) == 0.0


class RateLimited:
    """Answers 429 (with ``retry_after_s``) ``failures`` times, then "ok"; records times."""

    def __init__(self, failures: int, retry_after_s: float | None) -> None:
        self.name = "limited"
        self.immediate = False
        self.failures = failures
        self.retry_after_s = retry_after_s
        self.times: list[float] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.times.append(time.perf_counter())
        if len(self.times) <= self.failures:
            raise EndpointError("429", kind="429", retry_after_s=self.retry_after_s)
        return ChatResponse(text="ok", model=self.name)

    async def aclose(self) -> None:
        return None


async def test_wait_is_at_least_retry_after_even_above_max_s() -> None:
    inner = RateLimited(failures=2, retry_after_s=0.2)
    response = await RetryingModel(inner, retries=3, **FAST).complete(REQUEST)
    assert response.ok
    gaps = [b - a for a, b in zip(inner.times, inner.times[1:], strict=False)]
    assert len(gaps) == 2
    assert all(gap >= 0.2 for gap in gaps), gaps
    assert all(gap < 1.0 for gap in gaps), gaps


async def test_backoff_wins_when_longer_than_retry_after() -> None:
    model = RetryingModel(RateLimited(0, 0.01), initial_s=0.3, max_s=0.3)
    error = EndpointError("429", kind="429", retry_after_s=0.01)
    assert model.delay(1, error) == pytest.approx(0.3)
    assert model.delay(1, EndpointError("429", kind="429", retry_after_s=5.0)) == 5.0
    assert model.delay(1, None) == pytest.approx(0.3)


async def test_retry_after_beyond_the_limit_is_not_waited_for() -> None:
    inner = RateLimited(failures=1, retry_after_s=600)
    model = RetryingModel(inner, retries=3, max_retry_after_s=60, **FAST)
    started = time.perf_counter()
    response = await model.complete(REQUEST)
    assert time.perf_counter() - started < 0.5
    assert len(inner.times) == 1
    assert response.error is not None
    assert "failed after 1 attempts" in response.error
    assert "Retry-After 600 s exceeds max_retry_after_s 60" in response.error


async def test_retries_stay_bounded_under_endless_429() -> None:
    inner = RateLimited(failures=10**9, retry_after_s=0.01)
    model = RetryingModel(inner, retries=3, **FAST)
    response = await model.complete(REQUEST)
    assert len(inner.times) == 4
    assert response.error is not None
    assert response.error.startswith("failed after 4 attempts")
    snapshot = model.metrics_snapshot()
    assert snapshot["retries"] == 3
    assert snapshot["requests"] == snapshot["requests_failed"] == 1


def _model(server: FakeServer, **kwargs: object) -> OpenAIModel:
    return OpenAIModel(name="m", base_url=server.base_url, model="fake", api_key_env=None, **kwargs)


async def test_openai_backend_carries_retry_after_from_the_header() -> None:
    async with FakeServer(script=["429", "503"], retry_after_s=0.4) as server:
        model = _model(server)
        try:
            with pytest.raises(EndpointError) as info:
                await model.complete(REQUEST)
            assert info.value.kind == "429"
            assert info.value.status == 429
            assert info.value.retry_after_s == 0.4
            assert info.value.endpoint == server.base_url
            assert "RateLimitError" in str(info.value)
            with pytest.raises(EndpointError) as info:
                await model.complete(REQUEST)
            assert info.value.kind == "5xx"
            assert info.value.retry_after_s is None
        finally:
            await model.aclose()


async def test_measured_wait_against_the_fake_server_honours_the_header() -> None:
    async with FakeServer(script=["429"], retry_after_s=1) as server:
        model = RetryingModel(_model(server), retries=2, **FAST)
        started = time.perf_counter()
        try:
            response = await model.complete(REQUEST)
        finally:
            await model.aclose()
        elapsed = time.perf_counter() - started
    assert response.ok, response.error
    assert elapsed >= 1.0  # "Retry-After: 1"
    assert elapsed < 3.0
    assert server.counts["429"] == 1
    assert server.counts["ok"] == 1
    snapshot = model.metrics_snapshot()
    assert snapshot["errors"] == {"429": 1}
    assert snapshot["retries"] == 1
    assert snapshot["endpoints"][server.base_url]["retries"] == 1
    assert snapshot["requests_ok"] == 1


async def test_openai_backend_sends_the_whole_request() -> None:
    schema = {"type": "object", "properties": {"guess": {"type": "number"}}}
    request = ChatRequest(
        messages=(ChatMessage("system", "s"), ChatMessage("user", "u")),
        max_tokens=50,
        temperature=0.3,
        seed=9,
        json_schema=schema,
    )
    async with FakeServer() as server:
        model = _model(server, max_tokens_cap=20)
        try:
            response = await model.complete(request)
        finally:
            await model.aclose()
    assert server.last_request == {
        "model": "fake",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "max_tokens": 20,
        "temperature": 0.3,
        "seed": 9,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    }
    assert json.loads(response.text) == {"guess": fake_guess(9)}
    assert response.tokens_in > 0
    assert response.tokens_out > 0
