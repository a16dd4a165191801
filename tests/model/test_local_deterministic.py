"""``deterministic`` on the local backend: what megasim sends llama.cpp, checked without
loading a model (xllamacpp's server is replaced by a recorder). That the bundled model then
gives identical runs is tested in tests/campaign/test_determinism.py (slow)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from megasim.model import local
from megasim.model.base import ChatMessage, ChatRequest
from megasim.model.config import LocalModelConfig
from megasim.model.factory import build_model

REQUEST = ChatRequest(messages=(ChatMessage("user", "Your guess?"),), max_tokens=8, seed=3)


class RecordingServer:
    """Stands in for ``xllamacpp.Server``: records bodies and how many calls overlap."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def handle_chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.bodies.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.02)  # long enough for the other calls to overlap if they may
        with self._lock:
            self.in_flight -= 1
        n = int(body.get("n", 1))
        choices = [{"index": i, "message": {"content": f"c{i}"}} for i in range(n)]
        return {"choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": 1}}


@pytest.fixture
def gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A model path that exists, and xllamacpp's server replaced so nothing is loaded."""
    import xllamacpp

    monkeypatch.setattr(xllamacpp, "Server", RecordingServer)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"")
    return str(path)


def test_config_default_is_off_and_accepts_on() -> None:
    assert LocalModelConfig(backend="local").deterministic is False
    assert LocalModelConfig(backend="local", deterministic=True).deterministic is True


async def test_deterministic_turns_prompt_cache_off_and_decodes_one_call_at_a_time(
    gguf: str,
) -> None:
    model = local.LocalModel(path=gguf, parallel=4, deterministic=True)
    server: RecordingServer = model._server
    assert server.params.cache_prompt is False  # the server default for any other request
    singles = asyncio.gather(*(model.complete(REQUEST) for _ in range(4)))
    _, merged = await asyncio.gather(singles, model.complete_n(REQUEST, 3))
    assert server.most_in_flight == 1  # no two calls ever share llama.cpp's batch
    assert all(body["cache_prompt"] is False for body in server.bodies)
    assert [r.text for r in merged] == ["c0", "c1", "c2"]  # n samples still one call
    assert next(b for b in server.bodies if "n" in b)["n"] == 3
    await model.aclose()


async def test_default_keeps_the_prompt_cache_and_parallel_calls(gguf: str) -> None:
    model = local.LocalModel(path=gguf, parallel=4)
    server: RecordingServer = model._server
    await asyncio.gather(*(model.complete(REQUEST) for _ in range(4)))
    assert server.most_in_flight > 1
    assert all("cache_prompt" not in body for body in server.bodies)  # llama.cpp: true
    await model.aclose()


class _BuiltError(Exception):
    """Raised by the stand-in LocalModel: the factory's arguments are all the test needs."""


def test_factory_passes_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def recorder(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise _BuiltError

    monkeypatch.setattr(local, "LocalModel", recorder)
    with pytest.raises(_BuiltError):
        build_model("l", LocalModelConfig(backend="local", merge=False, deterministic=True))
    assert seen.get("deterministic") is True
