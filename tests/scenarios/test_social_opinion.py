"""Scenario social_opinion end to end on the local runtime (surrogate and scripted models)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from megasim.config import SimulationConfig
from megasim.run import run_simulation
from megasim.scenarios.social_opinion import SocialOpinion

SCENARIO = "social_opinion"


def social_data(out: Path, agents: int = 600, rounds: int = 3, **runtime: Any) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "seed": 11,
        "rounds": rounds,
        "social": {
            "topic": "Cities should ban cars from their centres.",
            "graph": {"kind": "block_model", "degree": 8, "homophily": 0.85},
            "feed_size": 5,
            "interventions": [
                {"step": 2, "kind": "broadcast", "account": 3, "text": "Ban them!", "stance": 95},
                {"step": 2, "kind": "remove", "account": 5},
                {"step": 3, "kind": "recommender", "recommender": "similar"},
            ],
        },
        "population": {"size": agents, "groups": 4},
        "models": {"s": {"backend": "surrogate"}},
        "runtime": runtime,
        "out_dir": str(out),
    }


def social_config(
    out: Path, agents: int = 600, rounds: int = 3, **runtime: Any
) -> SimulationConfig:
    return SimulationConfig.model_validate(social_data(out, agents, rounds, **runtime))


def decisions_of(result: Any) -> Any:
    table = result.run_dir.read_decisions().drop_columns(["shard"])
    return table.sort_by([("step", "ascending"), ("agent_id", "ascending")])


async def test_shards_and_partitions_do_not_change_the_run(tmp_path: Path) -> None:
    one = await run_simulation(social_config(tmp_path), run_id="one")
    split = await run_simulation(social_config(tmp_path, shards=3, env_partitions=4), run_id="k")
    assert decisions_of(split).equals(decisions_of(one))
    assert [s.outcome for s in split.steps] == [s.outcome for s in one.steps]
    last = one.steps[-1].outcome
    assert last["n"] == 599  # account 5 was removed at step 2: it no longer acts
    assert sum(last["histogram"]) == last["n"]
    assert last["assortativity"] is not None
    assert last["assortativity"] > 0.3
    assert last["same_side_share"] > 0.9  # "similar" recommender at step 3: echo chambers
    assert one.steps[1].outcome["actions"]["like"] > 0
    assert {c["community"] for c in last["communities"]} == {0, 1, 2, 3}


async def test_report_prints_tables_and_draws_the_subgraph(tmp_path: Path) -> None:
    result = await run_simulation(social_config(tmp_path, agents=300, rounds=2), run_id="r")
    console = Console(record=True, width=200)
    files = SocialOpinion().report(result.run_dir.path, tmp_path / "out", console)
    text = console.export_text()
    assert "Stance per step" in text
    assert "Echo chambers" in text
    assert "bimodality" in text
    assert [f.name for f in files] == ["social_subgraph.png"]
    assert files[0].stat().st_size > 5000


@pytest.mark.slow
async def test_100k_agents_on_the_surrogate(tmp_path: Path) -> None:
    data = social_data(tmp_path, agents=100_000, rounds=1)
    data["social"]["graph"] = {"kind": "scale_free", "degree": 5}
    started = time.perf_counter()
    result = await run_simulation(SimulationConfig.model_validate(data), run_id="big")
    elapsed = time.perf_counter() - started
    assert [s.metrics["decisions"] for s in result.steps] == [100_000]
    assert result.steps[-1].outcome["actions"]["post"] > 30_000
    assert elapsed < 60, elapsed
