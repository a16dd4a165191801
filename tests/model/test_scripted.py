"""Tests for megasim.model.scripted: deterministic answers without I/O."""

from __future__ import annotations

import pytest

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelClient
from megasim.model.scripted import ScriptedModel


def _request(agent_id: int | None = None, **meta: object) -> ChatRequest:
    return ChatRequest(messages=(ChatMessage("user", "guess"),), agent_id=agent_id, meta=meta)


def test_is_a_model_client_and_immediate() -> None:
    model = ScriptedModel()
    assert isinstance(model, ModelClient)
    assert model.immediate is True
    assert model.name == "scripted"
    assert ScriptedModel(name="s1").name == "s1"


async def test_default_answer_is_33() -> None:
    response = await ScriptedModel().complete(_request())
    assert isinstance(response, ChatResponse)
    assert response.text == "33"
    assert response.model == "scripted"
    assert response.ok
    assert response.tokens_out == 1


@pytest.mark.parametrize(
    ("agent_id", "step", "expected"),
    [
        (0, 0, "a"),
        (1, 0, "b"),
        (2, 0, "c"),
        (3, 0, "a"),
        (0, 1, "b"),
        (0, 2, "c"),
        (1, 1, "c"),
        (2, 2, "b"),
        (10, 5, "a"),
    ],
)
async def test_cycles_by_agent_id_plus_step(agent_id: int, step: int, expected: str) -> None:
    model = ScriptedModel(responses=["a", "b", "c"])
    response = await model.complete(_request(agent_id=agent_id, step=step))
    assert response.text == expected


async def test_missing_agent_id_or_step_counts_as_zero() -> None:
    model = ScriptedModel(responses=["x", "y"])
    assert (await model.complete(_request())).text == "x"
    assert (await model.complete(_request(step=1))).text == "y"
    assert (await model.complete(_request(agent_id=1))).text == "y"


async def test_responder_overrides_responses_and_sees_the_request() -> None:
    seen: list[ChatRequest] = []

    def responder(request: ChatRequest) -> str:
        seen.append(request)
        return f"agent {request.agent_id} says 42"

    model = ScriptedModel(responses=["ignored"], responder=responder)
    request = _request(agent_id=7, step=3)
    response = await model.complete(request)
    assert response.text == "agent 7 says 42"
    assert response.tokens_out == 4
    assert seen == [request]
    assert seen[0] is request


async def test_responder_alone_is_enough() -> None:
    model = ScriptedModel(responses=(), responder=lambda _r: "1")
    assert (await model.complete(_request())).text == "1"


def test_needs_responses_or_responder() -> None:
    with pytest.raises(ValueError, match="responses or a responder"):
        ScriptedModel(responses=())


async def test_counts_calls() -> None:
    model = ScriptedModel(responses=["a", "b"])
    assert model.calls == 0
    for i in range(5):
        await model.complete(_request(agent_id=i))
    assert model.calls == 5
    with_responder = ScriptedModel(responder=lambda _r: "z")
    await with_responder.complete(_request())
    await with_responder.complete(_request())
    assert with_responder.calls == 2


async def test_complete_does_not_suspend() -> None:
    """``immediate`` promises complete() finishes on its first send()."""
    coro = ScriptedModel(responses=["5"]).complete(_request())
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value.text == "5"


async def test_aclose_is_harmless() -> None:
    model = ScriptedModel()
    await model.aclose()
    assert (await model.complete(_request())).text == "33"
