"""CachingModel: a rerun with the same seeds replays without calling the model."""

from __future__ import annotations

from pathlib import Path

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse
from megasim.model.cache import CachingModel, request_key


class Counting:
    name = "m"
    immediate = False

    def __init__(self, error: str | None = None) -> None:
        self.calls = 0
        self.error = error

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(f"answer {request.seed}", self.name, 7, 3, 0.5, error=self.error)

    async def aclose(self) -> None:
        return None


def req(seed: int) -> ChatRequest:
    return ChatRequest(messages=(ChatMessage("user", "q"),), seed=seed)


def test_key_depends_on_seed_and_model() -> None:
    assert request_key("m", req(1)) == request_key("m", req(1))
    assert request_key("m", req(1)) != request_key("m", req(2))
    assert request_key("m", req(1)) != request_key("other", req(1))


async def test_second_run_replays_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first = CachingModel(Counting(), path)
    answers = [await first.complete(req(s)) for s in range(5)]
    await first.aclose()
    inner = Counting()
    second = CachingModel(inner, path)  # a new process would open the same file
    replayed = [await second.complete(req(s)) for s in range(5)]
    assert inner.calls == 0
    assert [r.text for r in replayed] == [r.text for r in answers]
    assert all(r.cached for r in replayed)
    assert second.metrics_snapshot()["cache"] == {"hits": 5, "misses": 0, "stored": 0}
    await second.complete(req(99))
    assert inner.calls == 1
    await second.aclose()


async def test_failures_are_not_cached(tmp_path: Path) -> None:
    inner = Counting(error="HTTP 500")
    model = CachingModel(inner, tmp_path / "c.sqlite")
    await model.complete(req(1))
    await model.complete(req(1))
    assert inner.calls == 2
    await model.aclose()


async def test_a_different_model_behind_the_name_misses(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    first = CachingModel(Counting(), path, fingerprint='{"temperature": 0.7}')
    await first.complete(req(1))
    await first.aclose()
    inner = Counting()
    changed = CachingModel(inner, path, fingerprint='{"temperature": 0.0}')
    await changed.complete(req(1))
    assert inner.calls == 1  # not replayed from a different configuration
    await changed.aclose()
