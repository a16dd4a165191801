"""Prompt variants P1-P5: the paper's instructions, JSON format, stable prompt ids."""

from __future__ import annotations

import pytest

from megasim.env.guess_game import GuessObservation
from megasim.scenarios.guess_prompts import (
    GUESS_ONLY_SCHEMA,
    REASONED_SCHEMA,
    VARIANTS,
    build_prompt,
    describe_background,
    fraction_text,
    target_text,
)


def obs(round_no: int = 1, winner: float | None = None, **kw: float) -> GuessObservation:
    values = {"ratio": 2 / 3, "offset": 0.0, "low": 0.0, "high": 100.0, **kw}
    return GuessObservation(round_no, 3, 0, 50, winner, **values)  # type: ignore[arg-type]


def text(variant: str, o: GuessObservation, background: str | None = None) -> str:
    prompt = build_prompt(variant, o, 64, background)
    return "\n".join(m.content for m in prompt.messages)


def test_fractions_and_targets() -> None:
    assert fraction_text(2 / 3) == "2/3"
    assert fraction_text(0.5) == "1/2"
    assert fraction_text(1.0) == "1"
    assert fraction_text(0.123456) == "0.123456"
    assert target_text(2 / 3, 0) == "2/3 of the average of all chosen numbers"
    assert target_text(0.5, 5) == "5 plus 1/2 of the average of all chosen numbers"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_states_the_game_and_asks_for_json(variant: str) -> None:
    content = text(variant, obs())
    assert "50 players" in content
    assert "between 0 and 100" in content
    assert "2/3 of the average" in content
    assert "round 1 of 3" in content
    assert '"guess"' in content
    assert "previous round" not in content


def test_variant_instructions_differ_as_in_the_paper() -> None:
    p1, p2, p3, p4 = (text(v, obs()) for v in ("P1", "P2", "P3", "P4"))
    assert "directly" in p1
    assert "step by step" not in p1
    assert "step by step" in p2
    assert "rational" not in p2
    assert "rational" in p3
    assert "anticipates" not in p3
    assert "rational" in p4
    assert "anticipates" in p4
    assert build_prompt("P1", obs(), 8).schema == GUESS_ONLY_SCHEMA
    assert build_prompt("P2", obs(), 8).schema == REASONED_SCHEMA


def test_p5_carries_the_background() -> None:
    content = text("P5", obs(), "a retired economist who loves chess")
    assert "retired economist who loves chess" in content
    assert "step by step" in content


def test_later_rounds_tell_the_previous_winner() -> None:
    content = text("P1", obs(2, 21.0456))
    assert "round 2 of 3" in content
    assert "winning number was 21.05" in content


def test_prompt_ids_stable_and_distinct() -> None:
    a = build_prompt("P2", obs(), 64)
    assert a.prompt_id == build_prompt("P2", obs(), 64).prompt_id
    assert a.prompt_id.startswith("P2-")
    assert a.prompt_id != build_prompt("P3", obs(), 64).prompt_id
    assert a.prompt_id != build_prompt("P2", obs(2, 10.0), 64).prompt_id


def test_describe_background_prefers_written_background() -> None:
    assert describe_background({"background": " A nurse. ", "age": 30}) == "A nurse."
    described = describe_background(
        {"agent_id": 1, "group": 0, "model": "m", "age": 30, "education_level": "PhD"}
    )
    assert described == "age: 30; education level: PhD"
    assert describe_background({"agent_id": 1}) == "no particular background"
    pending = {"age": 30, "background": None, "background_status": "rejected"}
    assert describe_background(pending) == "age: 30"  # pipeline bookkeeping is not persona
