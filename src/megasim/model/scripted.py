"""Scripted model: deterministic answers for tests, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from megasim.model.base import ChatRequest, ChatResponse

Responder = Callable[[ChatRequest], str]


class ScriptedModel:
    """Answers ``responses[(agent_id + step) % len(responses)]``, or whatever ``responder`` says.

    Completes without awaiting, so shards step scripted agents without creating tasks.
    """

    def __init__(
        self,
        name: str = "scripted",
        responses: Sequence[str] = ("33",),
        responder: Responder | None = None,
    ) -> None:
        if not responses and responder is None:
            raise ValueError("ScriptedModel needs responses or a responder")
        self.name = name
        self.immediate = True
        self.task_free = True
        self._responses = tuple(responses)
        self._responder = responder
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self._responder is not None:
            text = self._responder(request)
        else:
            key = (request.agent_id or 0) + int(request.meta.get("step", 0))
            text = self._responses[key % len(self._responses)]
        return ChatResponse(text=text, model=self.name, tokens_out=len(text.split()))

    async def aclose(self) -> None:
        return None
