"""Retry wrapper: retryable failures get exponential backoff with jitter, then a recorded error."""

from __future__ import annotations

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
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
        self._wait = wait_exponential_jitter(initial=initial_s, max=max_s)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            return await self.inner.complete(request)
        except ModelError as first:
            if self.retries == 0:
                return self._failed(first, attempts=1)
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
