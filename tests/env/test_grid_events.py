"""Grid events, nesting and listeners that must never hold up a step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from megasim.env import grid as grid_module
from megasim.env.base import DecisionBatch
from megasim.env.grid import GridWorld
from megasim.env.grid_geometry import Geometry
from megasim.scenarios.segregation_town import Town

Seen = list[tuple[str, dict[str, Any]]]


def town(cells: list[int], groups: list[int], width: int = 6) -> Town:
    n = len(cells)
    grid = GridWorld(
        Geometry(width, width, torus=False),
        np.arange(n, dtype=np.int64) + 100,  # agent ids 100, 101, ...
        np.asarray(groups, dtype=np.int16),
        ["a", "b"],
        np.asarray(cells, dtype=np.int64),
        threshold=0.5,
    )
    return Town(grid)


def wants(env: Town, cells: list[int]) -> dict[str, Any]:
    """One shard's partial for agents 100.. wanting ``cells`` (their own cell: stay)."""
    n = len(cells)
    values = np.asarray(cells, dtype=np.float64)
    ids = np.arange(n, dtype=np.int64) + 100
    return env.reduce(DecisionBatch(ids, np.zeros(n, np.int32), values, np.ones(n, np.bool_)))


def recorder(seen: Seen, delay: float = 0.0):  # type: ignore[no-untyped-def]
    async def listener(event: str, payload: Mapping[str, Any]) -> None:
        if delay:
            await asyncio.sleep(delay)
        seen.append((event, dict(payload)))

    return listener


async def step(env: Town, number: int, cells: list[int]) -> dict[str, Any]:
    outcome = env.combine([wants(env, cells)])
    await env.apply(number, outcome)
    return outcome


async def test_agents_coming_into_range_are_announced_once_per_pair() -> None:
    # 100 at (0,0), 101 at (5,0), 102 at (5,5); 101 moves to (1,1): next to 100, not 102
    env = town([0, 5, 35], [0, 1, 0])
    seen: Seen = []
    env.grid.on("in_range", recorder(seen))
    env.grid.on("moved", recorder(seen))
    await step(env, 1, [0, 7, 35])
    await env.drain()
    events = dict(seen)
    assert events["moved"]["agents"].tolist() == [101]
    assert events["moved"]["from"].tolist() == [5]
    assert events["moved"]["to"].tolist() == [7]
    assert events["in_range"]["pairs"].tolist() == [[100, 101]]
    seen.clear()
    # 102 moves to (0,1): next to 100 (already) and 101 (new); 100 and 101 stay in range
    await step(env, 2, [0, 7, 6])
    await env.drain()
    assert dict(seen)["in_range"]["pairs"].tolist() == [[100, 102], [101, 102]]


async def test_nobody_listening_means_no_pairs_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> None:
        raise AssertionError("computed in_range pairs nobody listens to")

    monkeypatch.setattr(grid_module, "new_pairs_in_range", fail)
    env = town([0, 5], [0, 1])
    env.on("step_end", recorder([]))
    await step(env, 1, [0, 7])
    await env.drain()


async def test_events_bubble_through_the_tree_with_each_level_its_own_listeners() -> None:
    env = town([0, 5, 35], [0, 1, 0])
    everything: Seen = []
    group_a: Seen = []
    grid_only: Seen = []
    env.on("*", recorder(everything))
    env.child("group_a").on("group_step", recorder(group_a))
    env.child("grid").on("step_end", recorder(grid_only))
    await step(env, 1, [0, 7, 35])
    await env.drain()
    assert [p["group"] for _, p in group_a] == ["a"]  # only its own group
    assert group_a[0][1]["n"] == 2
    assert env.child("group_b").state["step"] == 1  # the group's state follows the steps
    assert [p["env"] for _, p in grid_only] == ["grid"]
    kinds = sorted(e for e, _ in everything)
    assert kinds == ["group_step", "group_step", "in_range", "moved", "step_end", "step_end"]
    ends = {p["env"] for e, p in everything if e == "step_end"}
    assert ends == {"grid", "town"}


async def test_a_slow_listener_never_blocks_a_step() -> None:
    env = town([0, 5, 35], [0, 1, 0])
    slow: Seen = []
    env.grid.on("step_end", recorder(slow, delay=0.6))
    env.on("step_end", recorder(slow, delay=0.6))
    started = time.perf_counter()
    await step(env, 1, [0, 7, 35])
    await step(env, 2, [0, 7, 35])
    assert time.perf_counter() - started < 0.5  # two steps while the listeners sleep 0.6 s
    assert slow == []
    assert env.listener_tasks.pending == 4
    await env.drain()
    # the grid's step_end reaches both listeners (it bubbles), the town's only its own
    assert sorted(p["step"] for _, p in slow) == [1, 1, 1, 2, 2, 2]


async def test_a_failing_listener_is_recorded_not_raised() -> None:
    env = town([0, 5], [0, 1])

    async def broken(event: str, payload: Mapping[str, Any]) -> None:
        raise RuntimeError("listener bug")

    env.child("group_a").on("group_step", broken)
    await step(env, 1, [0, 5])
    await env.drain()
    assert [str(e) for e in env.listener_tasks.errors] == ["listener bug"]


async def test_snapshot_of_the_tree_restores_every_child() -> None:
    env = town([0, 5, 35], [0, 1, 0])
    await step(env, 1, [0, 7, 35])
    replica = town([1, 2, 3], [0, 1, 0])
    replica.restore(env.snapshot())
    assert replica.grid.positions.tolist() == [0, 7, 35]
    assert replica.child("group_a").state == env.child("group_a").state
    assert replica.grid.state["step"] == 1
