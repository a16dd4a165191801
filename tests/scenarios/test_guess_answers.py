"""Answer modes: structured (one JSON call, one repair) and extract (free text, then up to
three extraction calls), counted call by call on scripted models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from megasim.agent import PersonaTable
from megasim.config import load_config
from megasim.env.guess_game import GuessGame
from megasim.model.base import ChatRequest
from megasim.model.scripted import ScriptedModel
from megasim.run import run_simulation
from megasim.scenarios.guess_answers import EXTRACT_SEPARATOR, EXTRACT_TRIES, REPAIR_SEPARATOR
from megasim.scenarios.guess_prompts import PromptStyle
from megasim.scenarios.guess_two_thirds import GuessAgent, PromptBook


def agent(responder: Callable[[ChatRequest], str], mode: str = "extract") -> GuessAgent:
    personas = PersonaTable(pa.table({"agent_id": [0], "group": [0]}))
    book = PromptBook(1, {}, style=PromptStyle(answer_mode=mode))  # type: ignore[arg-type]
    return GuessAgent(0, 0, personas, ScriptedModel(responder=responder), 0, "P2", book)


def scripted(*answers: str) -> tuple[Callable[[ChatRequest], str], list[ChatRequest]]:
    seen: list[ChatRequest] = []
    queue = iter(answers)

    def responder(request: ChatRequest) -> str:
        seen.append(request)
        return next(queue)

    return responder, seen


async def test_extract_free_text_then_one_extraction() -> None:
    responder, seen = scripted("I think others pick 50, so I say twenty two.", "22")
    a = agent(responder)
    d = await a.act(GuessGame([1], rounds=1).observe(a))
    assert len(seen) == 2
    assert seen[0].json_schema is None  # free text, not JSON
    assert "End your reply with the number" in seen[0].messages[-1].content
    assert "twenty two" in seen[1].messages[-1].content  # the extraction sees the reply
    assert seen[1].meta["call"] == "extract"
    assert (d.value, d.valid, d.error) == (22.0, True, None)
    assert d.raw_text == f"I think others pick 50, so I say twenty two.{EXTRACT_SEPARATOR}22"
    assert d.tokens_out == 10 + 1  # scripted: tokens_out = words, summed over both calls


async def test_extract_retries_then_fails_with_reason() -> None:
    responder, seen = scripted("hmm", "no idea", "none", "still nothing")
    a = agent(responder)
    d = await a.act(GuessGame([1], rounds=1).observe(a))
    assert len(seen) == 1 + EXTRACT_TRIES
    assert len({r.seed for r in seen[1:]}) == EXTRACT_TRIES  # each try samples anew
    assert (d.value, d.valid) == (None, False)
    assert d.error is not None
    assert d.error.startswith(f"parse: extraction failed after {EXTRACT_TRIES} tries: ")
    assert d.tokens_out == 1 + 2 + 1 + 2


async def test_extract_out_of_range_is_invalid_without_more_tries() -> None:
    responder, seen = scripted("I choose 250", "250")
    a = agent(responder)
    d = await a.act(GuessGame([1], rounds=1).observe(a))
    assert len(seen) == 2
    assert d.valid is False
    assert d.error == "parse: out of range [0, 100]: 250"


async def test_structured_mode_stays_one_call() -> None:
    responder, seen = scripted('{"reasoning": "x", "guess": 30}')
    a = agent(responder, "structured")
    d = await a.act(GuessGame([1], rounds=1).observe(a))
    assert len(seen) == 1
    assert seen[0].json_schema is not None
    assert (d.value, d.valid) == (30.0, True)


async def test_run_counts_calls_and_tokens_per_mode(write_config: Callable[..., Path]) -> None:
    """20 agents x 2 rounds; scripted answers cycle "10", "20", "abc" by agent + step.
    Calls are counted from the texts kept in raw_text (every scripted call answers).
    structured: 40 calls + one repair per "abc"; extract: 2 calls per decision, and for
    "abc" 1 + 3 extraction calls, all failing."""
    counts = {}
    for mode in ("structured", "extract"):
        path = write_config(f"{mode}.yaml", game={"answer_mode": mode})
        result = await run_simulation(load_config(path), run_id=mode)
        rows = result.run_dir.read_decisions().to_pylist()
        bad = sum(1 for r in rows if (r["agent_id"] + r["step"]) % 3 == 2)
        calls = sum(
            1
            + (r["raw_text"] or "").count(
                EXTRACT_SEPARATOR if mode == "extract" else REPAIR_SEPARATOR
            )
            for r in rows
        )
        tokens = sum(r["tokens_out"] for r in rows)
        counts[mode] = (len(rows), bad, calls, tokens)
        assert sum(not r["valid"] for r in rows) == bad
        if mode == "extract":
            assert calls == 2 * (40 - bad) + (1 + EXTRACT_TRIES) * bad
            assert tokens == calls  # every scripted answer here is one word
            assert all(
                r["error"].startswith("parse: extraction failed") for r in rows if not r["valid"]
            )
        else:
            assert calls == 40 + bad
            assert tokens == calls
    assert counts["structured"][:2] == counts["extract"][:2]
