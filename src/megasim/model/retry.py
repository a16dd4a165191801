"""Retry wrapper: retryable failures get exponential backoff with jitter, then a recorded error.

A failure that carries ``retry_after_s`` (an ``EndpointError`` from a 429 or 503 with a
``Retry-After`` header) waits at least that long before the next attempt; one asking for
more than ``max_retry_after_s`` is not retried at all (recorded with the reason)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
)

from megasim.model.base import ChatRequest, ChatResponse, ModelClient, ModelError
from megasim.model.metrics import ModelMetrics


class RetryingModel:
    """Wraps any ModelClient. The first attempt is a plain await (no per-call overhead at 1M
    agents); only a failure enters tenacity. After the budget, the answer is an error
    response carrying the last reason, so the decision is recorded, never lost: every
    ``complete()`` ends in exactly one ``ChatResponse`` (or the caller's cancellation, or a
    non-``ModelError`` exception, which is a bug and propagates)."""

    def __init__(
        self,
        inner: ModelClient,
        retries: int = 3,
        initial_s: float = 0.5,
        max_s: float = 20.0,
        max_retry_after_s: float = 120.0,
        metrics: ModelMetrics | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.immediate = inner.immediate
        self.retries = retries
        self._initial_s = initial_s
        self._max_s = max_s
        self.max_retry_after_s = max_retry_after_s
        if metrics is None:
            inner_metrics = getattr(inner, "metrics", None)
            metrics = inner_metrics if isinstance(inner_metrics, ModelMetrics) else None
        self.metrics = metrics if metrics is not None else ModelMetrics(inner.name)

    @property
    def max_n(self) -> int:
        """The inner client's samples per call (it may learn a lower one while running)."""
        return int(getattr(self.inner, "max_n", 1024 if hasattr(self.inner, "complete_n") else 1))

    def _backoff(self, retry: int) -> float:
        """Seconds before retry ``retry`` (1-based): ``initial_s * 2**(retry-1)`` plus up to
        1 s of jitter, capped at ``max_s`` (tenacity's wait_exponential_jitter formula)."""
        return min(self._initial_s * 2.0 ** (retry - 1) + random.uniform(0, 1), self._max_s)

    def delay(self, retry: int, error: BaseException | None) -> float:
        """The wait before retry ``retry``: the backoff, but at least the error's
        ``retry_after_s`` (the server's Retry-After), which ``max_s`` does not cap."""
        wait = self._backoff(retry)
        after = getattr(error, "retry_after_s", None)
        if after is not None:
            wait = max(wait, float(after))
        return wait

    def _too_long(self, error: BaseException | None) -> bool:
        after = getattr(error, "retry_after_s", None)
        return after is not None and float(after) > self.max_retry_after_s

    def _wait(self, state: RetryCallState) -> float:
        # tenacity's attempt 1 is our retry 2: the first retry waits before entering tenacity
        error = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number + 1, error)

    def _stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.retries:
            return True
        return state.outcome is not None and self._too_long(state.outcome.exception())

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self.metrics.retry(getattr(error, "endpoint", None))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        responses = await self._attempts(lambda: self._one(request), 1)
        return responses[0]

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """A merged call (``n`` samples) retried as a whole; needs an inner ``complete_n``."""
        return await self._attempts(lambda: self.inner.complete_n(request, n), n)  # type: ignore[attr-defined]

    async def _one(self, request: ChatRequest) -> list[ChatResponse]:
        return [await self.inner.complete(request)]

    async def _attempts(
        self, call: Callable[[], Awaitable[list[ChatResponse]]], n: int
    ) -> list[ChatResponse]:
        try:
            responses = await call()
        except ModelError as first:
            if self.retries == 0 or self._too_long(first):
                return [self._failed(first, attempts=1) for _ in range(n)]
            error: BaseException = first
        else:
            self._done(responses)
            return responses
        self.metrics.retry(getattr(error, "endpoint", None))
        await asyncio.sleep(self.delay(1, error))  # the first retry backs off too
        try:
            async for attempt in AsyncRetrying(
                stop=self._stop,
                wait=self._wait,
                retry=retry_if_exception_type(ModelError),
                before_sleep=self._before_sleep,
                reraise=False,
            ):
                with attempt:
                    responses = await call()
                    self._done(responses)
                    return responses
        except RetryError as exhausted:
            last = exhausted.last_attempt
            attempts = last.attempt_number + 1
            return [self._failed(last.exception(), attempts=attempts) for _ in range(n)]
        raise AssertionError("unreachable: tenacity either returns or raises RetryError")

    def _done(self, responses: list[ChatResponse]) -> None:
        for response in responses:
            self.metrics.request_done(response.error is None)

    def _failed(self, error: BaseException | None, attempts: int) -> ChatResponse:
        self.metrics.request_done(False)
        reason = f"failed after {attempts} attempts: {error}"
        if self._too_long(error):
            after = getattr(error, "retry_after_s", 0.0)
            limit = self.max_retry_after_s
            reason += f" (Retry-After {after:g} s exceeds max_retry_after_s {limit:g})"
        return ChatResponse(text="", model=self.name, error=reason)

    def metrics_snapshot(self) -> dict[str, Any]:
        """The inner client's snapshot if it has one (a pool adds its endpoints' state),
        else this wrapper's own request counters."""
        inner = getattr(self.inner, "metrics_snapshot", None)
        if callable(inner) and getattr(self.inner, "metrics", None) is self.metrics:
            snapshot: dict[str, Any] = inner()
            return snapshot
        return self.metrics.snapshot()

    async def aclose(self) -> None:
        await self.inner.aclose()
