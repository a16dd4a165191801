"""Sparse activation: a seeded, vectorised mask; inactive agents make no call and no row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from megasim.activity import ActivityPlan, ActivitySettings, active_mask
from megasim.model.scripted import ScriptedModel
from megasim.run import build_population
from megasim.runtime.local import LocalRuntime
from megasim.scenarios.social_opinion import SocialOpinion
from megasim.simulation import Simulation
from megasim.store.run_dir import RunDirectory
from tests.scenarios.test_social_opinion import social_config


def test_mask_is_seeded_and_hits_the_probability() -> None:
    ids = np.arange(200_000, dtype=np.int64)
    mask = active_mask(7, 3, ids, 0.01)
    assert mask.dtype == np.bool_
    assert abs(mask.mean() - 0.01) < 0.002
    assert np.array_equal(mask, active_mask(7, 3, ids, 0.01))
    assert not np.array_equal(mask, active_mask(7, 4, ids, 0.01))  # other step, other agents
    # a shard holding the second half sees exactly the same agents active
    assert np.array_equal(active_mask(7, 3, ids[100_000:], 0.01), mask[100_000:])


def test_schedule_and_column() -> None:
    schedule = [0.0] * 24
    schedule[1] = 1.0
    settings = ActivitySettings(probability=1.0, schedule=schedule, hours_per_step=1.0)
    assert settings.hour_factor(1) == 0.0
    assert settings.hour_factor(2) == 1.0
    plan = ActivityPlan(settings, 1, np.arange(100, dtype=np.int64))
    assert not plan.mask(1).any()
    assert plan.mask(2).all()
    assert settings.hour_factor(26) == 1.0  # the next day
    per_agent = ActivityPlan(
        ActivitySettings(column="p"), 1, np.arange(4, dtype=np.int64), np.array([0, 0, 1, 1.0])
    )
    assert per_agent.mask(5).tolist() == [False, False, True, True]  # type: ignore[union-attr]
    assert ActivitySettings().everyone
    assert ActivityPlan(ActivitySettings(), 0, ids := np.arange(3)).mask(1) is None
    assert ids.size == 3
    with pytest.raises(ValidationError):
        ActivitySettings(schedule=[1.0] * 23)
    with pytest.raises(ValidationError):
        ActivitySettings(probability=1.5)


async def test_inactive_agents_make_no_call_and_write_no_row(tmp_path: Path) -> None:
    config = social_config(tmp_path, agents=3000, rounds=2, shards=2)
    scenario = SocialOpinion()
    population = build_population(config)
    run_dir = RunDirectory.create(tmp_path, "sparse")
    model = ScriptedModel(
        "s", responder=lambda r: '{"opinion": 60, "action": "post", "message": "hi"}'
    )
    runtime = LocalRuntime(config, population, run_dir, models={"s": model})
    await runtime.start()
    settings = ActivitySettings(probability=0.1)
    for offset, shard in zip((0, 1500), runtime.shards, strict=True):
        shard.activity = ActivityPlan.build(settings, config.seed, population.slice(offset, 1500))
    sim = Simulation(config, runtime, scenario.build_env(config, population), run_dir)
    await scenario.run(sim)
    await runtime.close()
    expected = [
        int(active_mask(config.seed, step, np.arange(3000, dtype=np.int64), 0.1).sum())
        for step in (1, 2)
    ]
    assert [h.metrics["active"] for h in sim.history] == expected
    assert [h.metrics["decisions"] for h in sim.history] == expected
    assert model.calls == sum(expected)
    table = run_dir.read_decisions()
    assert table.num_rows == sum(expected)
    ids = table.filter(table.column("step").to_numpy() == 1).column("agent_id").to_numpy()
    mask = active_mask(config.seed, 1, np.arange(3000, dtype=np.int64), 0.1)
    assert sorted(ids.tolist()) == np.flatnonzero(mask).tolist()


def test_any_scenario_takes_activity_from_its_config(tmp_path: Path) -> None:
    """`activity:` in a run config: the guessing game with a per-agent column and 2 shards
    acts exactly the seeded mask, and metrics count active agents; a missing column is a
    config error naming the field."""
    import asyncio

    import pyarrow.compute as pc

    from megasim.config import ConfigError, SimulationConfig
    from megasim.run import run_simulation

    data = {
        "seed": 3,
        "rounds": 2,
        "population": {
            "size": 2000,
            "attributes": {"busy": {"dist": "uniform", "min": 0.0, "max": 0.2}},
        },
        "models": {"s": {"backend": "surrogate"}},
        "activity": {"column": "busy"},
        "runtime": {"shards": 2},
        "out_dir": str(tmp_path),
    }
    result = asyncio.run(run_simulation(SimulationConfig.model_validate(data), run_id="a"))
    population = build_population(SimulationConfig.model_validate(data))
    ids = population.column("agent_id").to_numpy()
    busy = population.column("busy").to_numpy()
    for step in (1, 2):
        rows = result.run_dir.read_decisions(step)
        expected = ids[active_mask(3, step, ids.astype(np.int64), busy)]
        assert sorted(pc.unique(rows.column("agent_id")).to_pylist()) == sorted(expected.tolist())
        assert result.run_dir.read_metrics()[step - 1]["active"] == len(expected)
        assert 100 < len(expected) < 300  # about 10 % of 2,000
    with pytest.raises(ConfigError, match=r"activity\.column: the population has no column 'x'"):
        build_population(SimulationConfig.model_validate({**data, "activity": {"column": "x"}}))


def test_a_plan_follows_the_agents_order_not_the_rows() -> None:
    """A scenario may build its agents in another order than the population rows; the
    positional mask then follows the agents (each id keeps its own probability)."""
    ids = np.array([10, 11, 12, 13], dtype=np.int64)
    plan = ActivityPlan(
        ActivitySettings(column="p"), 5, ids, np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float64)
    )
    shuffled = np.array([13, 12, 11, 10], dtype=np.int64)
    aligned = plan.aligned_to(shuffled)
    assert aligned.mask(1).tolist() == [False, True, False, True]
    assert plan.aligned_to(ids) is plan
    with pytest.raises(ValueError, match="not the population rows"):
        plan.aligned_to(np.array([10, 99], dtype=np.int64))
