"""MergingModel: identical in-flight requests become one call with n samples."""

from __future__ import annotations

import asyncio

import pytest

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelError
from megasim.model.merge import MergingModel, merge_key
from megasim.model.wire import fan_out


class NModel:
    """Counts calls; answers choice i of a call with f"{call}-{i}"."""

    name = "n"
    immediate = False

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return (await self.complete_n(request, 1))[0]

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        await asyncio.sleep(0.01)
        self.calls.append(n)
        if self.fail:
            raise ModelError("503")
        call = len(self.calls)
        return fan_out([f"{call}-{i}" for i in range(n)], self.name, 50, 10 * n + 1, 0.01)

    async def aclose(self) -> None:
        return None


def req(text: str = "hi", seed: int = 0, agent: int = 0) -> ChatRequest:
    return ChatRequest(messages=(ChatMessage("user", text),), seed=seed, agent_id=agent)


def test_key_ignores_seed_and_caller() -> None:
    assert merge_key(req(seed=1, agent=1)) == merge_key(req(seed=2, agent=9))
    assert merge_key(req("a")) != merge_key(req("b"))


async def test_identical_requests_share_one_call_each_gets_own_sample() -> None:
    inner = NModel()
    model = MergingModel(inner, window_s=0.01, max_n=64)
    responses = await asyncio.gather(*(model.complete(req(seed=i, agent=i)) for i in range(10)))
    assert inner.calls == [10]
    assert len({r.text for r in responses}) == 10  # independent samples, one per agent
    assert sum(r.tokens_in for r in responses) == 50  # prompt paid once
    assert sum(r.tokens_out for r in responses) == 101  # nothing counted twice
    assert model.stats.snapshot() == {"requests": 10, "calls": 1, "merged": 9}


async def test_groups_capped_at_max_n_and_by_prompt() -> None:
    inner = NModel()
    model = MergingModel(inner, window_s=0.01, max_n=4)
    prompts = ["a"] * 10 + ["b"] * 3
    await asyncio.gather(*(model.complete(req(p)) for p in prompts))
    assert sorted(inner.calls) == [2, 3, 4, 4]


async def test_failure_reaches_every_member_once() -> None:
    model = MergingModel(NModel(fail=True), window_s=0.005)
    responses = await asyncio.gather(*(model.complete(req()) for _ in range(3)))
    assert all(r.error is not None and "503" in r.error for r in responses)


async def test_backend_without_n_passes_through() -> None:
    class Plain:
        name = "p"
        immediate = False

        def __init__(self) -> None:
            self.calls = 0

        async def complete(self, request: ChatRequest) -> ChatResponse:
            self.calls += 1
            return ChatResponse("x", self.name)

        async def aclose(self) -> None:
            return None

    inner = Plain()
    model = MergingModel(inner)
    await asyncio.gather(*(model.complete(req()) for _ in range(5)))
    assert inner.calls == 5


@pytest.mark.slow
async def test_real_local_model_merges() -> None:
    from megasim.model.local import LocalModel

    inner = LocalModel(name="smol", parallel=2)
    model = MergingModel(inner, window_s=0.01)
    try:
        request = ChatRequest(
            messages=(ChatMessage("user", "Pick a number between 0 and 100."),), max_tokens=8
        )
        responses = await asyncio.gather(
            *(model.complete(ChatRequest(request.messages, 8, None, i)) for i in range(6))
        )
    finally:
        await model.aclose()
    assert model.max_n == 2  # llama.cpp accepts n up to its slot count
    assert model.stats.calls == 3
    assert all(r.ok and r.text for r in responses)
    assert sum(r.tokens_in for r in responses) > 0
    assert len({r.text for r in responses}) > 1  # sampled independently


async def test_merging_over_http_sends_one_request_with_n() -> None:
    """Identical requests through the real client stack reach the server as one call."""
    from megasim.model.config import OpenAIModelConfig
    from megasim.model.factory import build_model
    from megasim.model.fake_server import FakeServer

    async with FakeServer(latency_s=0.05, slots=8) as server:
        config = OpenAIModelConfig(
            backend="openai", base_url=server.base_url, model="m", api_key_env=None
        )
        model = build_model("o", config)
        try:
            responses = await asyncio.gather(
                *(
                    model.complete(ChatRequest((ChatMessage("user", "q"),), 8, None, i))
                    for i in range(12)
                )
            )
        finally:
            await model.aclose()
        assert server.counts["requests"] == 1
        assert all(r.ok and r.text for r in responses)
        snapshot = model.metrics_snapshot()  # type: ignore[attr-defined]
        assert snapshot["merge"] == {"requests": 12, "calls": 1, "merged": 11}
