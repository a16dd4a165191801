"""Retry wrapper: retryable failures get exponential backoff with jitter, then a recorded error."""

from __future__ import annotations

import asyncio
import random

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
)

from megasim.model.base import ChatRequest, ChatResponse, ModelClient, ModelError


class RetryingModel:
    """Wraps any ModelClient. The first attempt is a plain await (no per-call overhead at 1M
    agents); only a failure enters tenacity. After the budget, the answer is an error
    response carrying the last reason, so the decision is recorded, never lost."""

    def __init__(
        self, inner: ModelClient, retries: int = 3, initial_s: float = 0.5, max_s: float = 20.0
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.immediate = inner.immediate
        self.retries = retries
        self._initial_s = initial_s
        self._max_s = max_s

    def _backoff(self, retry: int) -> float:
        """Seconds before retry ``retry`` (1-based): ``initial_s * 2**(retry-1)`` plus up to
        1 s of jitter, capped at ``max_s`` (tenacity's wait_exponential_jitter formula)."""
        return min(self._initial_s * 2.0 ** (retry - 1) + random.uniform(0, 1), self._max_s)

    def _wait(self, state: RetryCallState) -> float:
        # tenacity's attempt 1 is our retry 2: the first retry waits before entering tenacity
        return self._backoff(state.attempt_number + 1)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            return await self.inner.complete(request)
        except ModelError as first:
            if self.retries == 0:
                return self._failed(first, attempts=1)
        await asyncio.sleep(self._backoff(1))  # the first retry backs off too
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.retries),
                wait=self._wait,
                retry=retry_if_exception_type(ModelError),
                reraise=False,
            ):
                with attempt:
                    return await self.inner.complete(request)
        except RetryError as exhausted:
            error = exhausted.last_attempt.exception()
            return self._failed(error, attempts=self.retries + 1)
        raise AssertionError("unreachable: tenacity either returns or raises RetryError")

    def _failed(self, error: BaseException | None, attempts: int) -> ChatResponse:
        return ChatResponse(
            text="", model=self.name, error=f"failed after {attempts} attempts: {error}"
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
