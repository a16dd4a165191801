"""Merging identical requests: one call with ``n`` samples instead of n calls.

Requests whose prompt and sampling parameters are identical (model, messages, max
tokens, temperature, schema; not the seed, not the caller) and that arrive within
``window_s`` of each other are sent once with ``n = len(group)``; each caller gets its
own choice, so every agent keeps an independent sample. In round 1 of the P1 game all
agents of a group share one prompt: 1,000,000 agents become ceil(1e6 / max_n) calls.

Determinism: a group's members are ordered by (seed, agent id), not by arrival; the call
carries the seed of the first in that order and choice *i* goes to the *i*-th. So the
same group gives every agent the same sample in every run, whatever asyncio's
scheduling. Which requests share a group still follows timing (window, ``max_n``); see
docs/reliability.md.

Accounting, so that nothing is counted twice: the prompt is paid once, so the first
member carries the call's prompt tokens and the others 0; completion tokens are split
evenly (the remainder to the first member). Latency is the call's, for every member.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from megasim.model.base import ChatRequest, ChatResponse, ModelClient


@runtime_checkable
class SupportsN(Protocol):
    """A backend that can return ``n`` independent samples of one request in one call."""

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]: ...


def merge_key(request: ChatRequest) -> str:
    """What must be equal for two requests to share one call."""
    return json.dumps(
        [
            [(m.role, m.content) for m in request.messages],
            request.max_tokens,
            request.temperature,
            request.json_schema,
        ],
        sort_keys=True,
        separators=(",", ":"),
    )


@dataclass(slots=True)
class _Group:
    requests: list[ChatRequest] = field(default_factory=list)
    waiters: list[asyncio.Future[ChatResponse]] = field(default_factory=list)
    sent: bool = False


def member_order(requests: list[ChatRequest]) -> list[int]:
    """Members by (seed, agent id, arrival): who gets which sample must not depend on
    which coroutine asyncio happened to run first."""

    def key(index: int) -> tuple[int, int, int]:
        request = requests[index]
        seed = -1 if request.seed is None else request.seed
        agent = -1 if request.agent_id is None else request.agent_id
        return seed, agent, index

    return sorted(range(len(requests)), key=key)


@dataclass(slots=True)
class MergeStats:
    requests: int = 0
    calls: int = 0
    merged: int = 0  # requests answered by a call made for another request

    def snapshot(self) -> dict[str, int]:
        return {"requests": self.requests, "calls": self.calls, "merged": self.merged}


def split_response(response: ChatResponse, n: int) -> list[ChatResponse]:
    """The same failure for each of ``n`` members (each records it once)."""
    return [
        ChatResponse(
            text=response.text,
            model=response.model,
            tokens_in=response.tokens_in if i == 0 else 0,
            tokens_out=response.tokens_out if i == 0 else 0,
            latency_s=response.latency_s,
            error=response.error,
        )
        for i in range(n)
    ]


class MergingModel:
    """Wraps a ``SupportsN`` client (else passes requests through unchanged)."""

    def __init__(self, inner: ModelClient, window_s: float = 0.005, max_n: int = 64) -> None:
        self.inner = inner
        self.name = inner.name
        self.immediate = inner.immediate
        self.task_free = bool(getattr(inner, "task_free", False))
        self.window_s = window_s
        self._cap = max_n
        self.stats = MergeStats()
        self._open: dict[str, _Group] = {}

    @property
    def max_n(self) -> int:
        """Members per merged call: the cap, or less if the backend takes fewer samples
        per call (read at every request: an endpoint's limit may be learned mid-run)."""
        return min(self._cap, int(getattr(self.inner, "max_n", self._cap)))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.stats.requests += 1
        max_n = self.max_n
        if max_n <= 1 or not isinstance(self.inner, SupportsN):
            self.stats.calls += 1
            return await self.inner.complete(request)
        key = merge_key(request)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[ChatResponse] = loop.create_future()
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Group()
            loop.call_later(self.window_s, self._flush, key, group)
        group.requests.append(request)
        group.waiters.append(waiter)
        if len(group.waiters) >= max_n:
            self._flush(key, group)
        return await waiter

    def _flush(self, key: str, group: _Group) -> None:
        """Send a group once: when it is full, or when its window closes."""
        if group.sent:
            return
        group.sent = True
        if self._open.get(key) is group:
            del self._open[key]
        self._send(group)

    def _send(self, group: _Group) -> None:
        n = len(group.waiters)
        self.stats.calls += 1
        self.stats.merged += n - 1
        order = member_order(group.requests)
        group.waiters = [group.waiters[i] for i in order]  # choice i -> i-th in this order
        task = asyncio.ensure_future(self._call(group.requests[order[0]], n))
        task.add_done_callback(lambda t: self._deliver(group, t))

    async def _call(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        assert isinstance(self.inner, SupportsN)
        if n == 1:
            return [await self.inner.complete(request)]
        return await self.inner.complete_n(request, n)

    def _deliver(self, group: _Group, task: asyncio.Future[list[ChatResponse]]) -> None:
        n = len(group.waiters)
        if task.cancelled():
            responses = [ChatResponse("", self.name, error="merged call cancelled")] * n
        elif task.exception() is not None:
            failure = ChatResponse("", self.name, error=f"merged call failed: {task.exception()}")
            responses = split_response(failure, n)
        else:
            responses = task.result()
            if len(responses) < n:  # a server that returned fewer choices than asked
                missing = ChatResponse("", self.name, error=f"{n - len(responses)} choices missing")
                responses = list(responses) + [missing] * (n - len(responses))
        for waiter, response in zip(group.waiters, responses, strict=False):
            if not waiter.done():
                waiter.set_result(response)

    def metrics_snapshot(self) -> dict[str, Any]:
        inner = getattr(self.inner, "metrics_snapshot", None)
        return {"merge": self.stats.snapshot(), **(inner() if callable(inner) else {})}

    async def aclose(self) -> None:
        await self.inner.aclose()
