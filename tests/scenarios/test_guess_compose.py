"""Prompts as data: parts in or out as configured, presets pinned, memory settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from megasim.cli import app
from megasim.config import ConfigError, load_config
from megasim.env.guess_game import GuessObservation
from megasim.run import run_simulation
from megasim.scenarios.guess_prompt_spec import PARTS, PromptSpec
from megasim.scenarios.guess_prompts import PromptStyle, build_prompt, compose
from megasim.scenarios.guess_settings import GameConfig
from megasim.scenarios.guess_two_thirds import makeup_texts, style_of
from megasim.store.run_dir import RunDirectory


def obs(round_no: int = 1, winner: float | None = None, **kw: float) -> GuessObservation:
    values = {"ratio": 2 / 3, "offset": 0.0, "low": 0.0, "high": 100.0, **kw}
    return GuessObservation(round_no, 3, 0, 100, winner, **values)


# Ids of the texts megasim sent before prompts became data (computed with that code).
PINNED = {
    "P1": ("P1-5838a85cdb60", "P1-d74deaff9fe8"),
    "P2": ("P2-d4174bc50ec4", "P2-3d31c501e406"),
    "P3": ("P3-55a36405b930", "P3-aa3270ebaa12"),
    "P4": ("P4-e9c9eedc0394", "P4-362cb1d64952"),
    "P5": ("P5-b16c206696ff", "P5-3d31c501e406"),
}


@pytest.mark.parametrize("variant", sorted(PINNED))
def test_preset_prompt_ids_unchanged(variant: str) -> None:
    background = "a nurse" if variant == "P5" else None
    first = build_prompt(variant, obs(), 64, background).prompt_id
    later = build_prompt(variant, obs(2, 21.5, ratio=0.5, offset=5.0), 64).prompt_id
    assert (first, later) == PINNED[variant]


def style(**game: Any) -> PromptStyle:
    return style_of(GameConfig.model_validate(game))


def joined(variant: str, st: PromptStyle, o: GuessObservation, **kw: Any) -> tuple[str, str]:
    prompt = compose(variant, o, 64, st, **kw)
    return prompt.messages[0].content, prompt.messages[1].content


def test_each_part_appears_only_when_configured() -> None:
    parts = ["rule", "rational", "anticipate", "famous_game", "background", "makeup"]
    st = style(prompts={"ALL": {"system": parts, "user": ["round", "memory", "answer"]}})
    system, user = joined(
        "ALL",
        st,
        obs(offset=5, ratio=0.5),
        background="a chess player",
        makeup="50 with job artist, 50 with job economist",
    )
    assert "5 plus 1/2 of the average" in system
    for name in ("rational", "anticipate", "famous_game"):
        assert PARTS[name] in system
    assert "Your background: a chess player" in system
    assert "The players: 50 with job artist, 50 with job economist." in system
    assert "step by step" not in system + user
    assert user.endswith('{"guess": <number>}')  # no step_by_step: no reasoning field
    for name in ("rational", "anticipate", "famous_game"):
        fewer = style(prompts={"X": {"system": [p for p in parts if p != name]}})
        assert PARTS[name] not in joined("X", fewer, obs())[0]
    # empty values leave their optional parts out
    system, _ = joined("ALL", st, obs())
    assert "background" not in system
    assert "The players" not in system


def test_parts_reworded_and_added_in_yaml() -> None:
    st = style(
        parts={
            "rational": "Everyone here reasons perfectly.",
            "chess": "All {players} play chess.",
        },
        prompts={
            "Q": {"system": ["rule", "rational", "chess"], "user": ["step_by_step", "answer"]}
        },
    )
    system, user = joined("Q", st, obs())
    assert "Everyone here reasons perfectly." in system
    assert "All players are rational." not in system
    assert "All 100 play chess." in system
    assert '"reasoning"' in user  # step_by_step implies a reasoning field
    assert compose("Q", obs(), 64, st).prompt_id.startswith("Q-")


@pytest.mark.parametrize(
    ("game", "field"),
    [
        ({"prompts": {"Q": {"system": ["rule", "nope"]}}}, "prompts.Q.system: unknown parts"),
        ({"prompts": {"P1": {}}}, "prompts.P1: P1 is a preset"),
        ({"prompts": {"my prompt": {}}}, "prompts.my prompt: a prompt name is"),
        ({"parts": {"x": "{colour}"}}, "parts.x: unknown placeholders ['colour']"),
        ({"parts": {"memory": "x"}}, "parts.memory"),
        ({"memory": "all"}, "game.memory"),
        ({"answer_mode": "json"}, "game.answer_mode"),
    ],
)
def test_bad_prompt_config_names_the_field(
    tmp_path: Path, write_config: Callable[..., Path], game: dict[str, Any], field: str
) -> None:
    path = write_config(game=game)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert field in str(err.value)
    result = CliRunner().invoke(app, ["run", str(path), "--quiet"])
    assert result.exit_code == 2
    assert field in result.output
    assert "Traceback" not in result.output


def test_memory_none_and_last_winner() -> None:
    later = obs(2, 21.0456)
    assert "winning number was 21.05" in joined("P1", style(), later)[1]
    assert "winning number" not in joined("P1", style(memory="none"), later)[1]


def test_full_memory_lists_own_answers_and_winners() -> None:
    st = style(memory="full")
    _, user = joined("P2", st, obs(3, 15.0), history=[[33.0, 20.0], [None, 15.0]])
    assert "Round 1: you chose 33.00; the winning number was 20.00." in user
    assert "Round 2: you chose no valid answer; the winning number was 15.00." in user


def test_makeup_counts_whole_groups() -> None:
    table = pa.table({"group": [0, 0, 0, 1], "job": ["artist", "economist", "artist", "x"]})
    texts = makeup_texts(table, "job", 2)
    assert texts == ["2 with job artist, 1 with job economist", "1 with job x"]
    with pytest.raises(ValueError, match=r"game\.disclose: the population has no column .age."):
        makeup_texts(table, "age", 2)


async def test_full_memory_grows_by_one_round_per_round(
    write_config: Callable[..., Path],
) -> None:
    """A real run: every round's prompt holds one more line of history; the winners in it
    are the game's own (metrics), and the answers the agent's own (decisions)."""
    path = write_config(
        rounds=4,
        game={"memory": "full", "prompts": {"M": {"user": ["round", "memory", "answer"]}}},
        population={
            "size": 6,
            "groups": 2,
            "attributes": {"prompt_variant": {"dist": "categorical", "weights": {"M": 1.0}}},
        },
    )
    result = await run_simulation(load_config(path), run_id="mem")
    run = RunDirectory(result.run_dir.path)
    decisions = run.read_decisions().to_pylist()
    prompts = {}
    for file in sorted((run.path / "prompts").glob("step=*/*.parquet")):
        for row in pq.read_table(file).to_pylist():
            prompts[row["prompt_id"]] = row["messages"]
    winners = {(s.step, g["group"]): g["winner"] for s in result.steps for g in s.outcome["groups"]}
    for d in decisions:
        text = str(prompts[d["prompt_id"]])
        assert text.count("Round ") == d["step"] - 1
        for past in range(1, d["step"]):
            own = next(x for x in decisions if x["agent_id"] == d["agent_id"] and x["step"] == past)
            answer = f"{own['value']:.2f}" if own["valid"] else "no valid answer"
            winner = winners[(past, d["group"])]
            assert f"Round {past}: you chose {answer}; the winning number was {winner:.2f}." in text


def test_prompt_spec_reasoning_default() -> None:
    assert PromptSpec(user=["step_by_step", "answer"]).wants_reasoning()
    assert not PromptSpec().wants_reasoning()
    assert not PromptSpec(user=["step_by_step"], reasoning=False).wants_reasoning()


async def test_a_prompt_the_config_lacks_is_a_config_error(
    write_config: Callable[..., Path],
) -> None:
    population = {
        "size": 4,
        "attributes": {"prompt_variant": {"dist": "categorical", "weights": {"Q9": 1.0}}},
    }
    path = write_config(population=population, game={"prompts": {"Q1": {}}})
    with pytest.raises(ConfigError, match=r"unknown prompt variants \['Q9'\]"):
        await run_simulation(load_config(path), run_id="q9")


def test_the_cli_exits_2_for_a_prompt_the_config_lacks(write_config: Callable[..., Path]) -> None:
    population = {
        "size": 4,
        "attributes": {"prompt_variant": {"dist": "categorical", "weights": {"Q9": 1.0}}},
    }
    path = write_config(population=population, game={"prompts": {"Q1": {}}})
    result = CliRunner().invoke(app, ["run", str(path), "--quiet"])
    assert result.exit_code == 2
    assert "game.prompts ['Q1']" in result.output


async def test_disclosed_makeup_counts_the_whole_group_across_shards(
    write_config: Callable[..., Path],
) -> None:
    """Two shards split each group; every prompt still states its whole group's counts."""
    population = {
        "size": 40,
        "groups": 2,
        "attributes": {
            "prompt_variant": {"dist": "categorical", "weights": {"D": 1.0}},
            "job": {"dist": "categorical", "weights": {"artist": 0.5, "economist": 0.5}},
        },
    }
    game = {"disclose": "job", "prompts": {"D": {"system": ["rule", "makeup"]}}}
    path = write_config(population=population, game=game, runtime={"shards": 2})
    result = await run_simulation(load_config(path), run_id="disclose")
    people = result.run_dir.read_population().to_pylist()
    texts = set()
    for file in (result.run_dir.path / "prompts").glob("step=*/*.parquet"):
        texts |= {str(m) for m in pq.read_table(file).column("messages").to_pylist()}
    for group in (0, 1):
        jobs = [p["job"] for p in people if p["group"] == group]
        counts = sorted(((jobs.count(j), j) for j in set(jobs)), key=lambda c: (-c[0], c[1]))
        expected = ", ".join(f"{n} with job {j}" for n, j in counts)
        assert any(f"The players: {expected}." in t for t in texts), expected
