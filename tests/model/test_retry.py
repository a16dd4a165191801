"""Tests for megasim.model.retry: backoff on ModelError, then a recorded error response."""

from __future__ import annotations

import time

import pytest

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelClient, ModelError
from megasim.model.retry import RetryingModel

FAST = {"initial_s": 0.001, "max_s": 0.005}
REQUEST = ChatRequest(messages=(ChatMessage("user", "guess"),), seed=1)


class Flaky:
    """Raises ``error_factory(n)`` on the first ``failures`` calls, then answers "ok"."""

    def __init__(
        self,
        failures: int,
        name: str = "flaky",
        immediate: bool = False,
        error: type[BaseException] = ModelError,
    ) -> None:
        self.name = name
        self.immediate = immediate
        self.failures = failures
        self.error = error
        self.calls = 0
        self.requests: list[ChatRequest] = []
        self.closed = False

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        self.requests.append(request)
        if self.calls <= self.failures:
            raise self.error(f"boom {self.calls}")
        return ChatResponse(text="ok", model=self.name, tokens_out=1)

    async def aclose(self) -> None:
        self.closed = True


def test_wraps_a_model_client() -> None:
    inner = Flaky(0, name="inner-name", immediate=True)
    model = RetryingModel(inner, retries=2, **FAST)
    assert isinstance(model, ModelClient)
    assert model.name == "inner-name"
    assert model.immediate is True
    assert RetryingModel(Flaky(0, immediate=False), retries=3, **FAST).immediate is False


async def test_success_first_time_calls_once() -> None:
    inner = Flaky(0)
    response = await RetryingModel(inner, retries=3, **FAST).complete(REQUEST)
    assert response.text == "ok"
    assert response.ok
    assert inner.calls == 1


@pytest.mark.parametrize(("retries", "failures"), [(1, 1), (3, 1), (3, 2), (3, 3), (5, 5)])
async def test_recovers_within_the_budget(retries: int, failures: int) -> None:
    inner = Flaky(failures)
    response = await RetryingModel(inner, retries=retries, **FAST).complete(REQUEST)
    assert response.ok
    assert response.text == "ok"
    assert inner.calls == failures + 1
    assert all(r is REQUEST for r in inner.requests)


@pytest.mark.parametrize("retries", [1, 2, 3])
async def test_one_failure_too_many_gives_an_error_response(retries: int) -> None:
    inner = Flaky(retries + 1)
    response = await RetryingModel(inner, retries=retries, **FAST).complete(REQUEST)
    assert not response.ok
    assert inner.calls == retries + 1
    assert response.error == f"failed after {retries + 1} attempts: boom {retries + 1}"


async def test_always_failing_returns_error_with_last_reason_and_never_raises() -> None:
    inner = Flaky(10**9, name="down")
    model = RetryingModel(inner, retries=3, **FAST)
    response = await model.complete(REQUEST)
    assert isinstance(response, ChatResponse)
    assert response.text == ""
    assert response.model == "down"
    assert response.error is not None
    assert "failed after 4 attempts" in response.error
    assert "boom 4" in response.error  # the last reason, not the first
    assert "boom 1" not in response.error
    assert inner.calls == 4
    # the wrapper is reusable after exhausting its budget
    again = await model.complete(REQUEST)
    assert again.error == "failed after 4 attempts: boom 8"
    assert inner.calls == 8


async def test_retries_zero_fails_after_one_attempt() -> None:
    inner = Flaky(1)
    response = await RetryingModel(inner, retries=0, **FAST).complete(REQUEST)
    assert inner.calls == 1
    assert response.error == "failed after 1 attempts: boom 1"
    assert response.text == ""


async def test_retries_zero_passes_success_through() -> None:
    inner = Flaky(0)
    response = await RetryingModel(inner, retries=0, **FAST).complete(REQUEST)
    assert response.text == "ok"
    assert inner.calls == 1


async def test_error_responses_from_inner_are_not_retried() -> None:
    class Refusing(Flaky):
        async def complete(self, request: ChatRequest) -> ChatResponse:
            self.calls += 1
            return ChatResponse(text="", model=self.name, error="HTTP 400: bad request")

    inner = Refusing(0)
    response = await RetryingModel(inner, retries=3, **FAST).complete(REQUEST)
    assert response.error == "HTTP 400: bad request"
    assert inner.calls == 1


async def test_other_exceptions_propagate_on_first_attempt() -> None:
    inner = Flaky(1, error=ValueError)
    with pytest.raises(ValueError, match="boom 1"):
        await RetryingModel(inner, retries=3, **FAST).complete(REQUEST)
    assert inner.calls == 1


async def test_other_exceptions_propagate_during_retries() -> None:
    class ModelThenBug(Flaky):
        async def complete(self, request: ChatRequest) -> ChatResponse:
            self.calls += 1
            if self.calls == 1:
                raise ModelError("transient")
            raise KeyError("bug")

    inner = ModelThenBug(0)
    with pytest.raises(KeyError, match="bug"):
        await RetryingModel(inner, retries=3, **FAST).complete(REQUEST)
    assert inner.calls == 2  # not retried further


async def test_backoff_waits_between_attempts() -> None:
    inner = Flaky(2)
    model = RetryingModel(inner, retries=2, initial_s=0.05, max_s=0.05)
    started = time.perf_counter()
    response = await model.complete(REQUEST)
    elapsed = time.perf_counter() - started
    assert response.ok
    assert inner.calls == 3
    # the first attempt is a plain await; two retries wait about 0.05 s each (capped by max_s)
    assert 0.08 <= elapsed < 2.0


async def test_first_retry_backs_off_too() -> None:
    """A failed first attempt (say a 429) is not re-sent immediately."""
    inner = Flaky(1)
    model = RetryingModel(inner, retries=1, initial_s=0.05, max_s=0.05)
    started = time.perf_counter()
    response = await model.complete(REQUEST)
    elapsed = time.perf_counter() - started
    assert response.ok
    assert inner.calls == 2
    assert 0.04 <= elapsed < 2.0


async def test_wait_is_capped_by_max_s() -> None:
    inner = Flaky(10**9)
    model = RetryingModel(inner, retries=3, initial_s=10.0, max_s=0.02)
    started = time.perf_counter()
    response = await model.complete(REQUEST)
    elapsed = time.perf_counter() - started
    assert response.error is not None
    assert inner.calls == 4
    assert 0.05 <= elapsed < 1.0  # three waits of 0.02 s, not 10 s and more


async def test_small_waits_keep_exhaustion_fast() -> None:
    inner = Flaky(10**9)
    started = time.perf_counter()
    await RetryingModel(inner, retries=5, **FAST).complete(REQUEST)
    assert time.perf_counter() - started < 1.0
    assert inner.calls == 6


async def test_aclose_closes_inner() -> None:
    inner = Flaky(0)
    await RetryingModel(inner, retries=3, **FAST).aclose()
    assert inner.closed


async def test_failed_merged_call_counts_every_member() -> None:
    from megasim.model.base import ChatMessage, ChatRequest, ModelError

    class AlwaysDown:
        name = "down"
        immediate = False

        async def complete(self, request: ChatRequest) -> ChatResponse:
            raise ModelError("503")

        async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
            raise ModelError("503")

        async def aclose(self) -> None:
            return None

    model = RetryingModel(AlwaysDown(), retries=0)
    responses = await model.complete_n(ChatRequest((ChatMessage("user", "q"),)), 5)
    assert len(responses) == 5
    assert len({id(r) for r in responses}) == 5
    assert model.metrics.snapshot()["requests"] == 5
