"""The shared wire helpers, and the import rule they exist for: a backend never imports
another backend or a wrapper."""

from __future__ import annotations

import pytest

from megasim.model.base import ChatMessage, ChatRequest
from megasim.model.wire import chat_body, fan_out
from tests.import_rules import SRC, imported_modules

MODEL = SRC / "model"


@pytest.mark.parametrize("backend", ["openai_backend", "local"])
def test_a_backend_imports_no_other_backend_or_wrapper(backend: str) -> None:
    imported = imported_modules(MODEL / f"{backend}.py")
    forbidden = {"local", "openai_backend", "merge", "retry", "cache", "pool", "surrogate"}
    forbidden.discard(backend)
    assert not {f"megasim.model.{name}" for name in forbidden | {"scripted"}} & imported


def test_fan_out_keeps_the_call_usage() -> None:
    responses = fan_out(["a", "b", "c"], "m", tokens_in=40, tokens_out=10, latency_s=0.5)
    assert [r.text for r in responses] == ["a", "b", "c"]
    assert sum(r.tokens_in for r in responses) == 40
    assert [r.tokens_out for r in responses] == [4, 3, 3]
    assert all(r.latency_s == 0.5 for r in responses)


def test_chat_body_caps_tokens_and_asks_for_the_schema() -> None:
    request = ChatRequest((ChatMessage("user", "hi"),), max_tokens=50, seed=7, json_schema={})
    body = chat_body(request, structured=True, temperature=0.5, max_tokens_cap=20)
    assert body["max_tokens"] == 20
    assert body["seed"] == 7
    assert body["temperature"] == 0.5
    assert body["response_format"]["json_schema"]["name"] == "answer"
