"""The segregation scenario on the two-node Ray cluster equals the local runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

from megasim.config import SimulationConfig
from megasim.run import run_simulation
from tests.runtime.test_checkpoint import decisions
from tests.scenarios.test_segregation import seg_data

pytestmark = [pytest.mark.ray, pytest.mark.slow]


async def test_segregation_on_two_nodes_equals_local(cluster: str, tmp_path: Path) -> None:
    """Positions travel in the snapshot and moves are resolved on the driver, so two
    shards on two nodes see the same grid and produce the same moves as one process."""
    local = await run_simulation(
        SimulationConfig.model_validate(seg_data(tmp_path, size=600, rounds=3)), run_id="local"
    )
    data = seg_data(tmp_path, size=600, rounds=3)
    pinned = {0: {"head_node": 0.01}, 1: {"worker_node": 0.01}}
    data["runtime"] = {
        "kind": "ray",
        "address": cluster,
        "shards": 2,
        "cpus_per_shard": 0,
        "shard_resources": pinned,
    }
    ray = await run_simulation(SimulationConfig.model_validate(data), run_id="ray")
    nodes = {s["node"] for m in ray.run_dir.read_metrics() for s in m["shards"]}
    assert len(nodes) == 2
    assert None not in nodes
    expected = decisions(local.run_dir).drop_columns(["shard"])
    assert decisions(ray.run_dir).drop_columns(["shard"]).equals(expected)
    assert [s.outcome for s in ray.steps] == [s.outcome for s in local.steps]
    assert sum(s.outcome["moved"] for s in ray.steps) > 0
