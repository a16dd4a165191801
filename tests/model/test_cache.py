"""CachingModel: a rerun with the same seeds replays without calling the model."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
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


async def test_a_locked_database_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """Another process holding the write lock stalls the cache, not every coroutine."""
    path = tmp_path / "c.sqlite"
    model = CachingModel(Counting(), path, busy_timeout_s=10.0)
    await model.complete(req(0))  # the file and its table exist
    locker = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")  # holds the write lock (WAL readers still read)
    locker.execute("INSERT INTO responses VALUES ('x', 0, 'm', 't', 1, 1, 0.1)")
    release = threading.Timer(0.6, locker.commit)  # a thread: the loop may be blocked
    release.start()
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        for _ in range(40):
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def complete_later() -> ChatResponse:
        await asyncio.sleep(0.05)  # the ticker is running by then
        return await model.complete(req(1))

    started = time.monotonic()
    answer, _ = await asyncio.gather(complete_later(), tick())
    waited = time.monotonic() - started
    release.join()
    locker.close()
    assert answer.text == "answer 1"
    assert waited >= 0.5  # the store really waited for the lock ...
    assert max(gaps) < 0.25  # ... while the other coroutine kept running
    assert model.lookup(req(1)) is not None  # and it was stored once the lock was free
    await model.aclose()
