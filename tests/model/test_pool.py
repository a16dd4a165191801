"""Tests for megasim.model.pool: many endpoints, one model, against real fake servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelClient, ModelError
from megasim.model.config import ModelConfig, OpenAIModelConfig
from megasim.model.endpoint import EndpointSpec, health_url
from megasim.model.factory import build_model
from megasim.model.fake_server import FakeServer
from megasim.model.merge import MergingModel
from megasim.model.openai_backend import OpenAIModel
from megasim.model.pool import EndpointPool
from megasim.model.retry import RetryingModel

CONFIG = TypeAdapter(ModelConfig)
FAST_RETRY = {"initial_s": 0.001, "max_s": 0.01}
FAST_PROBE = {"probe_initial_s": 0.05, "probe_max_s": 0.2}


def _requests(count: int) -> list[ChatRequest]:
    return [
        ChatRequest(messages=(ChatMessage("user", f"guess {i}"),), seed=i) for i in range(count)
    ]


@asynccontextmanager
async def servers(*options: dict[str, Any]) -> AsyncIterator[list[FakeServer]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(FakeServer(**o)) for o in options]


@asynccontextmanager
async def pool_of(
    urls: Sequence[str],
    caps: Sequence[int] | int = 4,
    retries: int = 3,
    **options: Any,
) -> AsyncIterator[RetryingModel]:
    caps = [caps] * len(urls) if isinstance(caps, int) else caps
    settings: dict[str, Any] = {"api_key_env": None, "timeout_s": 5.0, **FAST_PROBE}
    settings.update(options)
    pool = EndpointPool(
        "pooled",
        [EndpointSpec(u, c) for u, c in zip(urls, caps, strict=True)],
        model="fake",
        **settings,
    )
    model = RetryingModel(pool, retries=retries, **FAST_RETRY)
    try:
        yield model
    finally:
        await model.aclose()


def _pool(model: RetryingModel) -> EndpointPool:
    assert isinstance(model.inner, EndpointPool)
    return model.inner


async def _all(model: ModelClient, count: int) -> list[ChatResponse]:
    return list(await asyncio.gather(*(model.complete(r) for r in _requests(count))))


# -- configuration ------------------------------------------------------------------------


def test_endpoints_config_and_inherited_concurrency() -> None:
    config = CONFIG.validate_python(
        {
            "backend": "openai",
            "model": "qwen",
            "max_concurrency": 8,
            "endpoints": [
                {"base_url": "http://10.0.0.1:8000/v1", "max_concurrency": 64},
                {"base_url": "http://10.0.0.2:8000/v1"},
            ],
        }
    )
    assert isinstance(config, OpenAIModelConfig)
    assert config.base_url is None
    assert config.endpoint_list() == [
        ("http://10.0.0.1:8000/v1", 64),
        ("http://10.0.0.2:8000/v1", 8),
    ]
    shorthand = CONFIG.validate_python(
        {"backend": "openai", "model": "m", "base_url": "http://h/v1", "max_concurrency": 3}
    )
    assert isinstance(shorthand, OpenAIModelConfig)
    assert shorthand.endpoints is None
    assert shorthand.endpoint_list() == [("http://h/v1", 3)]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "endpoints", "give base_url (one endpoint) or endpoints (several)"),
        (
            {"base_url": "http://a/v1", "endpoints": [{"base_url": "http://b/v1"}]},
            "endpoints",
            "give base_url or endpoints, not both",
        ),
        ({"endpoints": []}, "endpoints", "at least 1 item"),
        (
            {"endpoints": [{"base_url": "http://a/v1"}, {"base_url": "http://a/v1/"}]},
            "endpoints",
            "duplicate base_url: http://a/v1",
        ),
        ({"endpoints": [{"base_url": "http://a/v1", "max_concurrency": 0}]}, "max_concurrency", ""),
        ({"endpoints": [{"url": "http://a/v1"}]}, "url", "Extra inputs"),
        ({"base_url": "http://a/v1", "dead_after": 0}, "dead_after", ""),
        ({"base_url": "http://a/v1", "probe_max_s": 0}, "probe_max_s", ""),
    ],
)
def test_endpoint_config_errors_name_the_field(
    data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        CONFIG.validate_python({"backend": "openai", "model": "m", **data})
    errors = info.value.errors()
    assert any(field in e["loc"] and message in e["msg"] for e in errors), errors


async def test_factory_builds_a_pool_for_endpoints_and_one_client_for_base_url() -> None:
    pooled = build_model(
        "p",
        CONFIG.validate_python(
            {
                "backend": "openai",
                "model": "m",
                "api_key_env": None,
                "retries": 2,
                "max_retry_after_s": 7,
                "dead_after": 5,
                "unavailable_timeout_s": 4,
                "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}, {"base_url": "http://x/v1"}],
            }
        ),
    )
    single = build_model(
        "s",
        CONFIG.validate_python(
            {
                "backend": "openai",
                "model": "m",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": None,
            }
        ),
    )
    assert isinstance(pooled, MergingModel)  # merging on by default, over the retry layer
    assert isinstance(single, MergingModel)
    pooled, single = pooled.inner, single.inner
    try:
        assert isinstance(pooled, RetryingModel)
        assert pooled.retries == 2
        assert pooled.max_retry_after_s == 7
        pool = _pool(pooled)
        assert pool.dead_after == 5
        assert pool.unavailable_timeout_s == 4
        assert pool.max_retry_after_s == 7
        assert [e.base_url for e in pool.endpoints] == ["http://127.0.0.1:9/v1", "http://x/v1"]
        assert [e.max_concurrency for e in pool.endpoints] == [16, 16]
        assert pooled.metrics is pool.metrics
        snapshot = pooled.metrics_snapshot()
        assert snapshot["model"] == "p"
        assert set(snapshot["endpoints"]) == {"http://127.0.0.1:9/v1", "http://x/v1"}
        assert snapshot["alive_endpoints"] == 2
        assert isinstance(single, RetryingModel)
        assert isinstance(single.inner, OpenAIModel)
        assert single.metrics is single.inner.metrics
        assert single.metrics_snapshot()["calls"] == 0
    finally:
        await pooled.aclose()
        await single.aclose()


def test_health_url() -> None:
    assert health_url("http://h:8000/v1") == "http://h:8000/health"
    assert health_url("http://h:8000/v1/") == "http://h:8000/health"
    assert health_url("http://h:8000/api", "ping") == "http://h:8000/api/ping"


def test_pool_rejects_duplicates_and_emptiness() -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        EndpointPool("p", [], model="m")
    with pytest.raises(ValueError, match="duplicate base_url"):
        EndpointPool("p", [EndpointSpec("http://a/v1"), EndpointSpec("http://a/v1/")], model="m")


# -- concurrency and balancing ----------------------------------------------------------


async def test_concurrency_caps_are_never_exceeded() -> None:
    async with (
        servers({"latency_s": 0.05}, {"latency_s": 0.05}) as (a, b),
        pool_of([a.base_url, b.base_url], caps=[3, 5]) as model,
    ):
        responses = await _all(model, 80)
        snapshot = model.metrics_snapshot()
    assert all(r.ok for r in responses)
    # the servers have no slot limit: what they saw is what the pool sent
    assert a.max_concurrency == 3
    assert b.max_concurrency == 5
    assert a.requests + b.requests == 80
    assert snapshot["calls"] == snapshot["ok"] == snapshot["requests"] == 80
    assert snapshot["in_flight"] == 0
    assert snapshot["queued"] == 0
    assert snapshot["endpoints"][a.base_url]["calls"] == a.requests
    assert snapshot["endpoints"][b.base_url]["calls"] == b.requests
    assert snapshot["endpoints"][a.base_url]["slots_in_use"] == 0


async def test_sequential_requests_round_robin_exactly() -> None:
    async with (
        servers({}, {}, {}) as trio,
        pool_of([s.base_url for s in trio]) as model,
    ):
        for request in _requests(30):
            assert (await model.complete(request)).ok
    assert [s.requests for s in trio] == [10, 10, 10]


async def test_equal_latency_balances_evenly() -> None:
    options = {"latency_s": 0.02}
    async with (
        servers(options, options, options, options) as four,
        pool_of([s.base_url for s in four], caps=4) as model,
    ):
        responses = await _all(model, 400)
    assert all(r.ok for r in responses)
    counts = [s.requests for s in four]
    assert sum(counts) == 400
    assert all(80 <= c <= 120 for c in counts), counts


async def test_least_in_flight_gives_free_endpoints_the_work() -> None:
    async with (
        servers({"latency_s": 0.01}, {"latency_s": 0.2}) as (fast, slow),
        pool_of([fast.base_url, slow.base_url], caps=8) as model,
    ):
        responses = await _all(model, 32)
    assert all(r.ok for r in responses)
    assert fast.requests > slow.requests
    # the slow endpoint takes a first wave of 8 and about one refill while the fast one
    # drains the rest
    assert 8 <= slow.requests <= 16, (fast.requests, slow.requests)


async def test_faster_endpoint_gets_more_calls() -> None:
    async with (
        servers({"latency_s": 0.02}, {"latency_s": 0.1}) as (fast, slow),
        pool_of([fast.base_url, slow.base_url], caps=4) as model,
    ):
        responses = await _all(model, 300)
    assert all(r.ok for r in responses)
    assert fast.requests + slow.requests == 300
    assert fast.requests > 2.5 * slow.requests, (fast.requests, slow.requests)


# -- faults -------------------------------------------------------------------------------


async def test_every_request_ends_once_and_counts_add_up_under_faults() -> None:
    faults = {"fail_500": 0.1, "fail_503": 0.05, "fail_429": 0.05, "malformed": 0.05}
    faults["retry_after_s"] = 0.01
    async with (
        servers({**faults, "rng_seed": 1}, {**faults, "rng_seed": 2}) as (a, b),
        pool_of([a.base_url, b.base_url], caps=6, retries=2, dead_after=1000) as model,
    ):
        responses = await _all(model, 300)
        snapshot = model.metrics_snapshot()
    ok = [r for r in responses if r.ok]
    failed = [r for r in responses if not r.ok]
    assert len(ok) + len(failed) == 300
    assert all(r.error and r.error.startswith("failed after 3 attempts") for r in failed)
    # no answer lost, none counted twice
    assert len(ok) == a.counts["ok"] + b.counts["ok"]
    sent = a.requests + b.requests
    assert snapshot["calls"] == sent
    assert sent <= 300 * 3  # retries are bounded
    assert snapshot["retries"] == sent - 300
    assert snapshot["requests"] == 300
    assert snapshot["requests_ok"] == len(ok)
    assert snapshot["requests_failed"] == len(failed)
    errors = snapshot["errors"]
    counts = a.counts + b.counts
    assert errors.get("5xx", 0) == counts["500"] + counts["503"]
    assert errors.get("429", 0) == counts["429"]
    assert errors.get("malformed", 0) == counts["malformed"]
    assert snapshot["ok"] == len(ok)
    assert snapshot["in_flight"] == 0
    assert snapshot["tokens_out"] > 0


async def test_malformed_body_is_recorded_as_an_error() -> None:
    async with (
        servers({"script": ["malformed", "malformed"]}) as (server,),
        pool_of([server.base_url], retries=0) as model,
    ):
        response = await model.complete(_requests(1)[0])
        snapshot = model.metrics_snapshot()
        retried = RetryingModel(_pool(model), retries=1, **FAST_RETRY)
        recovered = await retried.complete(_requests(1)[0])
    assert response.error is not None
    assert "malformed response" in response.error
    assert "JSONDecodeError" in response.error
    assert snapshot["errors"] == {"malformed": 1}
    assert snapshot["endpoints"][server.base_url]["errors"] == {"malformed": 1}
    assert recovered.ok
    assert server.counts["malformed"] == 2
    assert server.counts["ok"] == 1


async def test_4xx_is_an_error_response_and_not_retried() -> None:
    async with servers({}) as (server,):
        bad_url = f"{server.url}/nope"
        async with pool_of([bad_url], retries=3) as model:
            response = await model.complete(_requests(1)[0])
            snapshot = model.metrics_snapshot()
    assert response.error is not None
    assert response.error.startswith("HTTP 404")
    assert server.counts["not_found"] == 1
    assert snapshot["errors"] == {"4xx": 1}
    assert snapshot["retries"] == 0
    assert snapshot["alive_endpoints"] == 1


async def test_hung_connections_time_out_and_are_retried_on_another_endpoint() -> None:
    async with (
        servers({"hang": 1.0}, {}) as (hung, good),
        pool_of([hung.base_url, good.base_url], caps=4, timeout_s=0.3, dead_after=100) as model,
    ):
        started = time.perf_counter()
        responses = await _all(model, 8)
        elapsed = time.perf_counter() - started
        snapshot = model.metrics_snapshot()
    assert all(r.ok for r in responses), [r.error for r in responses]
    assert hung.counts["hang"] >= 1
    assert good.counts["ok"] == 8
    assert snapshot["errors"] == {"timeout": hung.counts["hang"]}
    assert snapshot["retries"] == hung.counts["hang"]
    assert snapshot["endpoints"][hung.base_url]["errors"] == {"timeout": hung.counts["hang"]}
    # one timeout per hung request, then the retry goes to the good endpoint
    assert elapsed < 0.3 * 2 + 1.0


async def test_dead_endpoint_is_skipped_then_recovers_on_restart() -> None:
    async with (
        servers({}, {}) as (a, b),
        pool_of([a.base_url, b.base_url], dead_after=2) as model,
    ):
        pool = _pool(model)
        assert all(r.ok for r in await _all(model, 10))
        await b.stop()
        responses = await _all(model, 40)  # b fails until it is taken out of rotation
        assert all(r.ok for r in responses)
        state = model.metrics_snapshot()["endpoints"][b.base_url]
        assert state["alive"] is False
        assert state["deaths"] == 1
        assert state["errors"]["connection"] >= 2
        served_by_a = a.counts["ok"]
        more = await _all(model, 20)
        assert all(r.ok for r in more)
        assert a.counts["ok"] == served_by_a + 20  # b is skipped, not tried
        await b.start()  # same port
        deadline = time.monotonic() + 5
        while not pool.endpoints[1].alive:
            assert time.monotonic() < deadline, "b never came back"
            await asyncio.sleep(0.02)
        b_before = b.requests
        assert all(r.ok for r in await _all(model, 20))
        snapshot = model.metrics_snapshot()
    assert b.requests > b_before  # back in rotation
    assert b.counts["health"] >= 1  # brought back by the probe
    assert snapshot["endpoints"][b.base_url]["revivals"] == 1
    assert snapshot["requests_ok"] == snapshot["requests"] == 90


async def test_all_dead_requests_wait_then_fail_with_the_reason() -> None:
    async with servers({}) as (server,):
        url = server.base_url
        await server.stop()
        async with pool_of(
            [url], retries=1, dead_after=1, unavailable_timeout_s=0.3, probe_initial_s=5
        ) as model:
            started = time.perf_counter()
            responses = await _all(model, 5)
            elapsed = time.perf_counter() - started
            snapshot = model.metrics_snapshot()
    errors = [r.error or "" for r in responses]
    assert all(not r.ok for r in responses)
    unavailable = [e for e in errors if "no live endpoint for model 'pooled' within 0.3 s" in e]
    assert unavailable, errors
    assert all(url in e and "APIConnectionError" in e for e in unavailable)
    assert 0.3 <= elapsed < 2.0
    assert snapshot["errors"]["unavailable"] == len(unavailable)
    assert snapshot["requests_failed"] == snapshot["requests"] == 5
    assert snapshot["alive_endpoints"] == 0


async def test_waiting_requests_are_served_when_an_endpoint_comes_back() -> None:
    async with servers({}) as (server,):
        await server.stop()
        async with pool_of([server.base_url], dead_after=1, unavailable_timeout_s=5) as model:
            with pytest.raises(ModelError, match="APIConnectionError"):
                await _pool(model).complete(_requests(1)[0])  # kills the endpoint
            assert model.metrics_snapshot()["alive_endpoints"] == 0
            waiting = asyncio.ensure_future(_all(model, 5))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            assert model.metrics_snapshot()["queued"] == 5
            await server.start()
            responses = await asyncio.wait_for(waiting, 5)
            await server.stop()
    assert all(r.ok for r in responses)


async def test_429_retry_after_keeps_calls_off_the_endpoint() -> None:
    async with (
        servers({"script": ["429"], "retry_after_s": 0.5}, {}) as (limited, other),
        pool_of([limited.base_url, other.base_url], caps=1) as model,
    ):
        started = time.perf_counter()
        first = asyncio.ensure_future(model.complete(_requests(1)[0]))  # 429 on `limited`
        while limited.requests == 0:
            await asyncio.sleep(0.005)
        rest = [await model.complete(r) for r in _requests(5)]
        assert time.perf_counter() - started < 0.5
        assert limited.requests == 1  # throttled: everything else went to `other`
        assert (await first).ok
        assert time.perf_counter() - started >= 0.5  # its retry honoured Retry-After
        later = [await model.complete(r) for r in _requests(4)]
    assert all(r.ok for r in rest + later)
    assert limited.counts["ok"] >= 1  # back in rotation after Retry-After


async def test_cancelled_waiters_do_not_leak_slots() -> None:
    async with (
        servers({"latency_s": 0.2}) as (server,),
        pool_of([server.base_url], caps=2) as model,
    ):
        tasks = [asyncio.ensure_future(model.complete(r)) for r in _requests(6)]
        await asyncio.sleep(0.05)
        for task in tasks[:4]:  # two in flight, two queued
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(t.result().ok for t in tasks[4:])
        snapshot = model.metrics_snapshot()
        assert snapshot["endpoints"][server.base_url]["slots_in_use"] == 0
        assert snapshot["in_flight"] == 0
        assert snapshot["cancelled"] == 2
        assert snapshot["queued"] == 0
        assert all(r.ok for r in await _all(model, 4))
        assert server.max_concurrency <= 2  # the server dropped what the client abandoned
        assert server.counts["abandoned"] == 2
        assert server.counts["ok"] == 6


async def test_closed_pool_answers_with_an_error() -> None:
    async with servers({}) as (server,):
        async with pool_of([server.base_url]) as model:
            pass
        response = await model.complete(_requests(1)[0])
    assert response.error is not None
    assert "pool closed" in response.error


async def test_huge_retry_after_fails_fast_and_parks_the_endpoint_briefly() -> None:
    async with servers({"script": ["429"], "retry_after_s": 100}) as (server,):
        pool = EndpointPool(
            "p",
            [EndpointSpec(server.base_url)],
            model="fake",
            api_key_env=None,
            max_retry_after_s=0.2,
        )
        model = RetryingModel(pool, retries=3, max_retry_after_s=0.2, **FAST_RETRY)
        try:
            started = time.perf_counter()
            first = await model.complete(_requests(1)[0])
            second = await model.complete(_requests(1)[0])  # waits out the (capped) throttle
            elapsed = time.perf_counter() - started
        finally:
            await model.aclose()
    assert first.error is not None
    assert "Retry-After 100 s exceeds max_retry_after_s 0.2" in first.error
    assert second.ok
    assert 0.19 <= elapsed < 1.5
    assert server.requests == 2


async def test_endpoint_on_this_node_is_preferred_then_others_take_the_overflow() -> None:
    """A shard pinned next to its node's model server calls that server first."""
    async with servers({"latency_s": 0.05, "slots": 8}, {"latency_s": 0.05, "slots": 8}) as (
        near,
        far,
    ):
        specs = [
            EndpointSpec(far.base_url, 4, node="10.0.0.2"),
            EndpointSpec(near.base_url, 4, node="10.0.0.1"),
        ]
        settings: dict[str, Any] = {"api_key_env": None, "timeout_s": 5.0, **FAST_PROBE}
        pool = EndpointPool("p", specs, model="fake", local_node="10.0.0.1", **settings)
        try:
            await asyncio.gather(*(pool.complete(r) for r in _requests(4)))
            assert (near.counts["requests"], far.counts["requests"]) == (4, 0)
            await asyncio.gather(*(pool.complete(r) for r in _requests(8)))  # > the local cap
            assert near.counts["requests"] == 8
            assert far.counts["requests"] == 4  # overflow goes to the other node
        finally:
            await pool.aclose()
