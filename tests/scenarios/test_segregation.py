"""The segregation scenario: rules with a scripted model, determinism, resume, report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from rich.console import Console
from tests.runtime.test_checkpoint import decisions

from megasim.config import SimulationConfig
from megasim.model.base import ChatRequest
from megasim.model.scripted import ScriptedModel
from megasim.run import build_population, resume_simulation, run_simulation
from megasim.runtime.local import LocalRuntime
from megasim.scenarios.segregation import Segregation
from megasim.scenarios.segregation_prompts import parse_choice
from megasim.scenarios.segregation_settings import SegregationSettings
from megasim.scenarios.segregation_town import Town
from megasim.simulation import Simulation, StepOutcome
from megasim.store.run_dir import RunDirectory

# by its registered name, like a user would (pyproject.toml entry point)
SCENARIO = "segregation"


def seg_data(out: Path, size: int = 300, rounds: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "seed": 11,
        "rounds": rounds,
        "segregation": {"width": 25, "height": 25, **extra},
        "population": {"size": size, "groups": 2},
        "models": {"s": {"backend": "surrogate"}},
        "out_dir": str(out),
    }


def config(out: Path, size: int = 300, rounds: int = 3, **runtime: Any) -> SimulationConfig:
    data = seg_data(out, size, rounds)
    data["runtime"] = runtime
    return SimulationConfig.model_validate(data)


async def scripted_run(
    cfg: SimulationConfig, responder: Any, run_id: str
) -> tuple[Simulation, RunDirectory]:
    scenario = Segregation()
    population = build_population(cfg)
    run_dir = RunDirectory.create(Path(cfg.out_dir), run_id)
    model = ScriptedModel("s", responder=responder)
    runtime = LocalRuntime(cfg, population, run_dir, models={"s": model})
    await runtime.start()
    sim = Simulation(cfg, runtime, scenario.build_env(cfg, population), run_dir)
    await scenario.run(sim)
    await runtime.close()
    return sim, run_dir


async def test_everyone_asking_for_the_first_offer(tmp_path: Path) -> None:
    """Scripted: all move to offer A; every wanted cell is taken once, losers stay."""
    cfg = config(tmp_path, size=400, rounds=2, shards=2)
    asked: dict[int, int] = {}

    def responder(request: ChatRequest) -> str:
        assert "Empty places you could move to" in request.messages[-1].content
        return json.dumps({"choice": "A"})

    sim, run_dir = await scripted_run(cfg, responder, "first")
    env = sim.env
    assert isinstance(env, Town)
    table = run_dir.read_decisions()
    assert table.num_rows == 800
    assert set(table.column("text").to_pylist()) == {"move A"}
    for outcome in (s.outcome for s in sim.history):
        step = table.filter(table.column("step").to_numpy() == len(asked) + 1)
        wanted = np.asarray(step.column("value").to_pylist(), dtype=np.int64)
        asked[len(asked) + 1] = int(np.unique(wanted).size)
        assert outcome["requested"] == 400
        assert outcome["moved"] == np.unique(wanted).size  # each wanted cell taken once
        assert outcome["moved"] + outcome["lost"] == 400
    assert np.unique(env.grid.positions).size == 400


async def test_everyone_staying_changes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, rounds=2)
    sim, _ = await scripted_run(cfg, lambda r: '{"choice": "stay"}', "stay")
    first, second = sim.history
    assert first.outcome["moved"] == second.outcome["moved"] == 0
    assert first.outcome["same_share"] == first.outcome["initial"]["same_share"]
    assert second.outcome["same_share"] == first.outcome["same_share"]


async def test_unusable_answers_are_invalid_and_the_agent_stays(tmp_path: Path) -> None:
    cfg = config(tmp_path, rounds=1)
    sim, run_dir = await scripted_run(cfg, lambda r: "I like it here, maybe Z", "bad")
    assert sim.history[0].outcome["invalid"] == 300
    assert sim.history[0].outcome["moved"] == 0
    errors = set(run_dir.read_decisions().column("error").to_pylist())
    assert errors == {"parse: no stay or offered letter"}


async def test_same_seed_same_run_whatever_the_sharding(tmp_path: Path) -> None:
    one = await run_simulation(config(tmp_path), run_id="one")
    three = await run_simulation(config(tmp_path, shards=3), run_id="three")
    expected = decisions(one.run_dir).drop_columns(["shard"])
    assert decisions(three.run_dir).drop_columns(["shard"]).equals(expected)
    assert [s.outcome for s in three.steps] == [s.outcome for s in one.steps]
    # the surrogate's Schelling rule segregates: the same-group share rises
    outcomes = [s.outcome for s in one.steps]
    assert outcomes[-1]["same_share"] > outcomes[0]["initial"]["same_share"] + 0.1
    assert outcomes[0]["moved"] > 0
    other = SimulationConfig.model_validate({**seg_data(tmp_path), "seed": 12})
    assert (await run_simulation(other, run_id="other")).steps[0].outcome != outcomes[0]


async def test_resume_continues_from_the_checkpointed_grid(tmp_path: Path) -> None:
    unbroken = await run_simulation(config(tmp_path, rounds=4), run_id="a")

    def crash_after_two(outcome: StepOutcome) -> None:
        if outcome.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await run_simulation(config(tmp_path, rounds=4), on_step=crash_after_two, run_id="b")
    resumed = await resume_simulation(tmp_path / "b")
    assert decisions(resumed.run_dir).equals(decisions(unbroken.run_dir))
    assert [s.outcome for s in resumed.steps] == [s.outcome for s in unbroken.steps]


async def test_report_prints_the_table_and_draws_the_grid(tmp_path: Path) -> None:
    result = await run_simulation(config(tmp_path, rounds=2), run_id="r")
    console = Console(record=True, width=100)
    files = Segregation().report(result.run_dir.path, tmp_path / "report", console)
    text = console.export_text()
    assert "Segregation per step" in text
    assert "Dissimilarity" in text
    assert [f.name for f in files] == ["segregation_grid.png"]
    assert files[0].stat().st_size > 5000


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="both width and height"):
        SegregationSettings(width=10)
    with pytest.raises(ValidationError, match="not both"):
        SegregationSettings(width=10, height=10, density=0.3)
    with pytest.raises(ValidationError, match="extra"):
        SegregationSettings.model_validate({"tolerence": "x"})
    assert SegregationSettings(density=0.25).grid_size(100) == (20, 20)
    assert SegregationSettings().grid_size(50) == (10, 10)


def test_a_missing_attribute_column_is_a_clear_error(tmp_path: Path) -> None:
    data = seg_data(tmp_path, attribute="colour")
    cfg = SimulationConfig.model_validate(data)
    with pytest.raises(ValueError, match="no column 'colour'"):
        Segregation().build_env(cfg, build_population(cfg))


def test_parse_choice() -> None:
    assert parse_choice('{"choice": "stay"}', 3) == "stay"
    assert parse_choice('[surrogate] {"choice": "B"}', 3) == "B"
    assert parse_choice('{"choice": "b"}', 3) == "B"
    assert parse_choice('{"choice": "D"}', 3) is None  # not offered
    assert parse_choice("I will stay here.", 3) == "stay"
    assert parse_choice("Move to C please", 3) == "C"
    assert parse_choice("", 3) is None


@pytest.mark.slow
async def test_100k_residents_on_the_surrogate(tmp_path: Path) -> None:
    data = seg_data(tmp_path, size=100_000, rounds=2)
    data["segregation"] = {"density": 0.5}
    started = time.perf_counter()
    result = await run_simulation(SimulationConfig.model_validate(data), run_id="big")
    wall = time.perf_counter() - started
    first, last = result.steps[0].outcome, result.steps[-1].outcome
    assert first["n"] == 100_000
    assert first["valid"] == 100_000
    assert first["moved"] > 10_000
    assert last["same_share"] > first["initial"]["same_share"]
    assert wall < 60, wall


def test_a_replica_built_from_a_slice_sees_the_drivers_grid(tmp_path: Path) -> None:
    """A Ray shard builds its environment from its own slice of the population (other
    size, maybe not every group): the snapshot alone must make it the driver's grid."""
    data = seg_data(tmp_path, size=300)
    data["segregation"] = {"density": 0.4}
    cfg = SimulationConfig.model_validate(data)
    population = build_population(cfg)
    driver = Segregation().build_env(cfg, population)
    part = population.slice(290, 10).filter(
        population.slice(290, 10).column("group").to_numpy() == 0
    )
    replica = Segregation().build_env(cfg, part)
    replica.restore(driver.snapshot())
    assert replica.grid.geometry == driver.grid.geometry
    assert replica.grid.labels == driver.grid.labels
    assert sorted(replica.children) == sorted(driver.children)
    driver.prepare()
    replica.prepare()
    agents = Segregation().build_agents(cfg, population, {"s": ScriptedModel("s")})
    assert [replica.observe(a) for a in agents] == [driver.observe(a) for a in agents]
