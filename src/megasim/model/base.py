"""Model interfaces: every backend and wrapper speaks ChatRequest -> ChatResponse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn, as OpenAI-compatible servers expect it."""

    role: str
    content: str


@dataclass(slots=True)
class ChatRequest:
    """A single model call (mutable and unhashed: a million are built per round).

    ``seed`` makes sampling reproducible per agent and step; ``json_schema``
    asks backends that support it for structured output, so one call per
    decision suffices. ``agent_id``, ``persona`` and ``meta`` (scenario
    context such as the prompt variant, shared between requests) are never
    sent to a real model: only stand-in models, logs and caches read them.
    """

    messages: tuple[ChatMessage, ...]
    max_tokens: int = 64
    temperature: float | None = None  # None: the model's configured temperature
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    agent_id: int | None = None
    persona: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ChatResponse:
    """What came back: the text plus the accounting we record per decision.

    Not frozen: frozen dataclasses pay an ``object.__setattr__`` per field, and a
    million responses are built per round with the surrogate."""

    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False  # replayed from the response cache, no model call made
    tokens_cached: int = 0  # prompt tokens the server reused from its prefix cache

    @property
    def ok(self) -> bool:
        return self.error is None


class ModelError(Exception):
    """A model call failed in a way worth retrying (timeout, 429, 5xx, connection)."""


class ModelSetupError(Exception):
    """A backend cannot start (missing model file, bad endpoint config); not retried."""


@runtime_checkable
class ModelClient(Protocol):
    """An async chat model. Implementations must be safe to call concurrently."""

    name: str
    immediate: bool  # True when complete() never awaits I/O; shards then skip task creation

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer one request; raise ModelError for retryable failures."""
        ...

    async def aclose(self) -> None:
        """Release servers, threads and connections."""
        ...
