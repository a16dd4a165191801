"""social_opinion on the two-node test cluster: shards and keyed state in Ray actors."""

from __future__ import annotations

from pathlib import Path

import pytest

from megasim.config import SimulationConfig
from megasim.run import run_simulation
from tests.scenarios.test_social_opinion import decisions_of, social_data

pytestmark = [pytest.mark.ray, pytest.mark.slow]


async def test_social_network_in_partition_actors_equals_local(
    cluster: str, tmp_path: Path
) -> None:
    """2 shards pinned to two nodes, posts/likes/follows in 3 partition actors: the same
    decisions and outcomes as one local shard with one in-process partition."""
    pinned = {0: {"head_node": 0.01}, 1: {"worker_node": 0.01}}
    runtime = {"kind": "ray", "address": cluster, "cpus_per_shard": 0, "shard_resources": pinned}
    data = social_data(tmp_path, agents=800, rounds=3, shards=2, env_partitions=3, **runtime)
    ray_run = await run_simulation(SimulationConfig.model_validate(data), run_id="ray-social")
    local = await run_simulation(
        SimulationConfig.model_validate(social_data(tmp_path, agents=800, rounds=3)), run_id="local"
    )
    assert decisions_of(ray_run).equals(decisions_of(local))
    assert [s.outcome for s in ray_run.steps] == [s.outcome for s in local.steps]
    assert ray_run.steps[-1].outcome["actions"]["follow"] > 0
