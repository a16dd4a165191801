"""The network environment: graphs, and its rules with the scripted model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from megasim.env.keyed_store import in_process_store
from megasim.env.network_generators import block_model, scale_free, small_world
from megasim.env.network_graph import SocialGraph, read_edge_list
from megasim.model.base import ChatRequest
from megasim.model.scripted import ScriptedModel
from megasim.run import build_population
from megasim.runtime.local import LocalRuntime
from megasim.scenarios.social_opinion import SocialOpinion
from megasim.simulation import Simulation
from megasim.store.run_dir import RunDirectory
from tests.scenarios.test_social_opinion import social_config


def test_generators_are_seeded_compact_and_shaped() -> None:
    g = scale_free(20_000, 5, seed=1)
    assert g.indices.dtype == np.int32
    assert g.nbytes / g.edges < 6
    assert np.array_equal(g.indices, scale_free(20_000, 5, seed=1).indices)
    assert not np.array_equal(g.indices, scale_free(20_000, 5, seed=2).indices)
    assert (g.out_degree() <= 5).all()
    assert g.in_degree().max() > 100
    assert not (g.sources() == g.indices).any()  # no self-loops
    w = small_world(1000, 6, 0.0, seed=1)
    assert set(w.followees(0).tolist()) == {1, 2, 3, 997, 998, 999}
    blocks = np.arange(4000) % 2
    b = block_model(blocks, 10, 0.9, seed=1)
    same = blocks[b.sources()] == blocks[b.indices]
    assert 0.85 < same.mean() < 0.95
    assert 8 < b.edges / 4000 < 12


def test_edge_list_files(tmp_path: Path) -> None:
    ids = np.array([10, 20, 30], dtype=np.int64)
    (tmp_path / "e.csv").write_text("source,target\n10,20\n20,30\n10,20\n30,30\n")
    src, dst = read_edge_list(tmp_path / "e.csv", ids)
    g = SocialGraph.from_edges(3, src, dst)
    assert g.followees(0).tolist() == [1]
    assert g.followees(1).tolist() == [2]
    assert g.edges == 2
    (tmp_path / "bad.csv").write_text("a,b\n10,99\n")
    with pytest.raises(ValueError, match="not in the population"):
        read_edge_list(tmp_path / "bad.csv", ids)


async def _run(
    tmp_path: Path,
    responder,
    agents: int = 400,
    rounds: int = 2,
    shards: int = 2,
    recommender: str = "following",
):  # type: ignore[no-untyped-def]
    config = social_config(tmp_path, agents=agents, rounds=rounds, shards=shards, env_partitions=3)
    config.social.interventions = []  # type: ignore[attr-defined]
    config.social.recommender = recommender  # type: ignore[attr-defined]
    scenario = SocialOpinion()
    population = build_population(config)
    run_dir = RunDirectory.create(tmp_path, f"s{shards}")
    model = ScriptedModel("s", responder=responder)
    runtime = LocalRuntime(config, population, run_dir, models={"s": model})
    await runtime.start()
    sim = Simulation(config, runtime, scenario.build_env(config, population), run_dir)
    await scenario.run(sim)
    store = runtime.store
    await runtime.close()
    return sim, store, population


def _answer(action: str, target: int | None = None) -> str:
    return json.dumps({"opinion": 50, "action": action, "target": target, "message": "m"})


async def test_everyone_likes_and_comments_the_same_post_nothing_lost(tmp_path: Path) -> None:
    """Step 1: agent 0 posts, nobody else does. Step 2 (popular feed): every other agent
    likes it, or comments on it: each like counted once, every comment kept in seeded order."""

    def responder(request: ChatRequest) -> str:
        step, agent = int(request.meta["step"]), int(request.agent_id or 0)
        if step == 1:
            return _answer("post" if agent == 0 else "none")
        return _answer("like" if agent % 2 else "comment", 1)

    config_store: list[object] = []
    sim, store, _ = await _run(tmp_path, responder, agents=200, shards=2, recommender="popular")
    config_store.append(store)
    assert store is not None
    pid = (1 << 32) | 0
    values = await store.read([f"likes/{pid}", f"comments/{pid}", "a/0"])
    assert values["likes/" + str(pid)] == list(range(1, 200, 2))
    comments = values[f"comments/{pid}"]
    assert len(comments) == 16  # comment_keep: the top 16 by seeded order, from 99 comments
    assert sim.history[1].outcome["actions"]["comment"] == 99
    assert sim.history[1].outcome["actions"]["like"] == 100


async def test_a_post_reaches_followers_on_another_shard_next_step(tmp_path: Path) -> None:
    seen: dict[int, list[str]] = {}

    def responder(request: ChatRequest) -> str:
        step, agent = int(request.meta["step"]), int(request.agent_id or 0)
        if step == 2:
            seen[agent] = [
                line for line in request.messages[-1].content.splitlines() if line.startswith("[")
            ]
        return _answer("post" if step == 1 and agent == 399 else "none")

    _sim, _store, population = await _run(tmp_path, responder, agents=400, shards=2)
    env = SocialOpinion().build_env(social_config(tmp_path, agents=400), population)
    followers = [a for a in range(400) if 399 in env.base_followees(a)]
    assert followers
    assert any(a < 200 for a in followers)
    for agent in range(400):
        has = any("person 399" in line for line in seen[agent])
        assert has == (agent in followers), agent


async def test_follow_then_unfollow_is_keyed_state(tmp_path: Path) -> None:
    def responder(request: ChatRequest) -> str:
        step, agent = int(request.meta["step"]), int(request.agent_id or 0)
        if agent != 7:
            return _answer("post")
        return _answer({1: "post", 2: "follow", 3: "unfollow"}[step], 1)

    sim, store, _ = await _run(tmp_path, responder, agents=100, rounds=3, shards=1)
    assert store is not None
    values = await store.read(["follow/7", "unfollow/7"])
    assert len(values["unfollow/7"]) == 1
    assert values.get("follow/7", []) == []
    assert [h.outcome["actions"]["follow"] for h in sim.history] == [0, 1, 0]


def test_store_is_in_process_for_local_runs() -> None:
    assert in_process_store(2).partitions
    assert pa is not None


def test_outcome_is_the_same_for_any_split_into_shards() -> None:
    """Exact sums: stance moments, per-community means and assortativity do not change in
    any bit when the agents are split into other shards or combined in another order."""
    from megasim.env.network_stats import combine_network, pair_partial, stance_partial

    rng = np.random.default_rng(3)
    values = rng.uniform(0, 100, 10_000) * (1 + 1e-9 * rng.standard_normal(10_000))
    groups = rng.integers(0, 4, 10_000).astype(np.int32)
    theirs = rng.uniform(0, 100, 10_000)

    def partial(rows: slice) -> dict[str, Any]:
        p = stance_partial(values[rows], groups[rows], 4, 0.0, 100.0)
        p.update(
            seen=[0, 0, 0, 0],  # feed counts: integers, exact anyway
            same_side=[0, 0, 0, 0],
            pairs=pair_partial(values[rows].tolist(), theirs[rows].tolist()),
            actions={},
        )
        return p

    whole = combine_network([partial(slice(0, 10_000))], 4)
    split = [partial(slice(0, 1234)), partial(slice(1234, 7777)), partial(slice(7777, 10_000))]
    assert combine_network(split, 4) == whole
    assert combine_network(split[::-1], 4) == whole
    assert whole["variance"] == pytest.approx(np.var(values, ddof=1), rel=1e-12)
