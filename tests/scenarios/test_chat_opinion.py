"""The chat-room opinion scenario end to end, on the local runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from rich.console import Console
from tests.runtime.test_checkpoint import decisions

from megasim.config import SimulationConfig
from megasim.model.base import ChatRequest
from megasim.model.scripted import ScriptedModel
from megasim.report.render import render_report
from megasim.run import build_population, resume_simulation, run_simulation
from megasim.runtime.local import LocalRuntime
from megasim.scenarios import get_scenario
from megasim.scenarios.chat_prompts import parse_message
from megasim.simulation import Simulation, StepOutcome
from megasim.store.run_dir import RunDirectory


def chat_data(out: Path, rounds: int = 4, **runtime: Any) -> dict[str, Any]:
    return {
        "scenario": "chat_opinion",
        "seed": 5,
        "rounds": rounds,
        "chat": {"statement": "Cats are better than dogs.", "window": 4},
        "population": {"size": 120, "groups": 5},
        "models": {"s": {"backend": "surrogate"}},
        "runtime": runtime,
        "out_dir": str(out),
    }


def config(out: Path, rounds: int = 4, **runtime: Any) -> SimulationConfig:
    return SimulationConfig.model_validate(chat_data(out, rounds, **runtime))


async def test_shards_and_partitions_do_not_change_the_discussion(tmp_path: Path) -> None:
    base = await run_simulation(config(tmp_path), run_id="one")
    split = await run_simulation(config(tmp_path, shards=3, env_partitions=4), run_id="split")
    expected = decisions(base.run_dir).drop_columns(["shard"])
    assert decisions(split.run_dir).drop_columns(["shard"]).equals(expected)
    assert [s.outcome for s in split.steps] == [s.outcome for s in base.steps]
    texts = expected.column("text").to_pylist()
    assert all(t is not None and t.startswith("[surrogate]") for t in texts)
    # discussion pulls rooms together: opinions spread less in the last step than the first
    assert base.steps[-1].outcome["std"] < base.steps[0].outcome["std"]


async def test_agents_read_their_own_room_only(tmp_path: Path) -> None:
    """A scripted model reports the authors it saw; each must be in the reader's room."""
    cfg = config(tmp_path, rounds=3, shards=2, env_partitions=3)
    seen: list[tuple[int, int, list[int]]] = []

    def responder(request: ChatRequest) -> str:
        text = request.messages[-1].content
        authors = [int(x.split()[0]) for x in text.split("- person ")[1:]]
        assert request.agent_id is not None
        seen.append((int(request.meta["step"]), request.agent_id, authors))
        return json.dumps({"opinion": 50, "message": f"from {request.agent_id}"})

    scenario = get_scenario("chat_opinion")
    population = build_population(cfg)
    run_dir = RunDirectory.create(tmp_path, "scripted")
    model = ScriptedModel("s", responder=responder)
    runtime = LocalRuntime(cfg, population, run_dir, models={"s": model})
    await runtime.start()
    sim = Simulation(cfg, runtime, scenario.build_env(cfg, population), run_dir)
    await scenario.run(sim)
    await runtime.close()
    room = dict(
        zip(
            population.column("agent_id").to_pylist(),
            population.column("group").to_pylist(),
            strict=True,
        )
    )
    assert {step for step, _, authors in seen if not authors} == {1}  # nothing said yet
    for step, reader, authors in seen:
        if step > 1:
            assert len(authors) == min(4, sum(1 for g in room.values() if g == room[reader]))
            assert all(room[a] == room[reader] for a in authors)
    table = run_dir.read_decisions()
    assert pc.all(pc.starts_with(table.column("text"), "from ")).as_py()


async def test_resume_restores_transcripts_and_opinions(tmp_path: Path) -> None:
    unbroken = await run_simulation(config(tmp_path, shards=2, env_partitions=2), run_id="a")

    def crash_after_two(outcome: StepOutcome) -> None:
        if outcome.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await run_simulation(
            config(tmp_path, shards=2, env_partitions=2), on_step=crash_after_two, run_id="b"
        )
    resumed = await resume_simulation(tmp_path / "b")
    assert decisions(resumed.run_dir).equals(decisions(unbroken.run_dir))
    assert [s.outcome for s in resumed.steps] == [s.outcome for s in unbroken.steps]


def test_parse_message() -> None:
    assert parse_message('{"opinion": 40, "message": " I agree. "}') == "I agree."
    assert parse_message('[surrogate] {"opinion": 4, "message": "[surrogate] x"}') == (
        "[surrogate] x"
    )
    assert parse_message('{"opinion": 40}') is None
    assert parse_message("[label] 42, I think") == "42, I think"
    assert parse_message("") is None
    assert parse_message("x" * 400) == "x" * 280


def test_a_non_numeric_opinion_column_is_refused(tmp_path: Path) -> None:
    scenario = get_scenario("chat_opinion")
    table = pa.table({"agent_id": [0, 1], "group": [0, 0], "opinion": [20.0, 150.0]})
    assert scenario.check_population(table) == ["column 'opinion': 1 values outside [0, 100]"]
    assert scenario.check_population(table.drop_columns(["opinion"])) == []
    table = pa.table({"agent_id": [0], "group": [0], "opinion": ["high"]})
    problems = scenario.check_population(table)
    assert problems
    assert "opinion" in problems[0]


async def test_report_of_a_chat_run_shows_opinions_without_winners(tmp_path: Path) -> None:
    result = await run_simulation(config(tmp_path, rounds=2), run_id="r")
    console = Console(record=True, width=80)
    render_report(result.run_dir.path, console)
    text = console.export_text()
    assert "Stated opinions" in text
    assert "stated opinions" in text
    assert "Winner" not in text
    assert "winning" not in text
