"""Tests for megasim.env.base.Environment: events, nesting, snapshots and default reductions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from megasim.env.base import DecisionBatch, Environment, Listener

Calls = list[tuple[str, str, dict[str, Any]]]


def _recorder(calls: Calls, tag: str) -> Listener:
    async def listener(event: str, payload: Mapping[str, Any]) -> None:
        calls.append((tag, event, dict(payload)))

    return listener


def _batch(groups: list[int], values: list[float]) -> DecisionBatch:
    vals = np.asarray(values, dtype=np.float64)
    return DecisionBatch(
        agent_ids=np.arange(len(groups), dtype=np.int64),
        groups=np.asarray(groups, dtype=np.int32),
        values=vals,
        valid=~np.isnan(vals),
    )


# --- events ------------------------------------------------------------------------


async def test_listener_called_with_event_and_payload() -> None:
    env = Environment("town")
    calls: Calls = []
    env.on("rain", _recorder(calls, "a"))
    await env.emit("rain", {"mm": 3})
    assert calls == [("a", "rain", {"mm": 3})]


async def test_listener_only_for_its_event() -> None:
    env = Environment()
    calls: Calls = []
    env.on("rain", _recorder(calls, "a"))
    await env.emit("sun", {})
    assert calls == []


async def test_several_listeners_same_event() -> None:
    env = Environment()
    calls: Calls = []
    env.on("rain", _recorder(calls, "a"))
    env.on("rain", _recorder(calls, "b"))
    await env.emit("rain", {"mm": 1})
    assert sorted(tag for tag, _, _ in calls) == ["a", "b"]


async def test_wildcard_listener_gets_every_event() -> None:
    env = Environment()
    calls: Calls = []
    env.on("*", _recorder(calls, "any"))
    env.on("rain", _recorder(calls, "rain"))
    await env.emit("rain", {"mm": 1})
    await env.emit("sun", {"uv": 5})
    assert ("any", "rain", {"mm": 1}) in calls
    assert ("any", "sun", {"uv": 5}) in calls
    assert ("rain", "rain", {"mm": 1}) in calls
    assert len(calls) == 3


async def test_events_bubble_from_child_to_ancestors() -> None:
    root, city, market = Environment("root"), Environment("city"), Environment("market")
    root.add_child(city)
    city.add_child(market)
    calls: Calls = []
    market.on("sale", _recorder(calls, "market"))
    city.on("sale", _recorder(calls, "city"))
    root.on("*", _recorder(calls, "root"))
    await market.emit("sale", {"price": 2})
    assert [tag for tag, _, _ in calls] == ["market", "city", "root"]  # child first, then up
    assert all(event == "sale" and payload == {"price": 2} for _, event, payload in calls)


async def test_events_do_not_flow_down_to_children() -> None:
    parent, child = Environment("p"), Environment("c")
    parent.add_child(child)
    calls: Calls = []
    child.on("*", _recorder(calls, "child"))
    await parent.emit("x", {})
    assert calls == []


async def test_listeners_run_concurrently() -> None:
    env = Environment()
    done: list[str] = []

    def sleeper(tag: str) -> Listener:
        async def listener(event: str, payload: Mapping[str, Any]) -> None:
            await asyncio.sleep(0.05)
            done.append(tag)

        return listener

    env.on("tick", sleeper("a"))
    env.on("tick", sleeper("b"))
    start = time.perf_counter()
    await env.emit("tick", {})
    elapsed = time.perf_counter() - start
    assert sorted(done) == ["a", "b"]
    assert elapsed < 0.09, f"listeners ran one after the other ({elapsed:.3f} s)"


async def test_listener_error_propagates() -> None:
    env = Environment()

    async def broken(event: str, payload: Mapping[str, Any]) -> None:
        raise RuntimeError("listener failed")

    env.on("x", broken)
    with pytest.raises(RuntimeError, match="listener failed"):
        await env.emit("x", {})


# --- nesting ---------------------------------------------------------------------------


def test_add_child_sets_parent_and_returns_child() -> None:
    parent, child = Environment("p"), Environment("c")
    assert parent.add_child(child) is child
    assert child.parent is parent
    assert parent.children == {"c": child}


def test_add_child_duplicate_name_raises() -> None:
    parent = Environment("p")
    parent.add_child(Environment("c"))
    with pytest.raises(ValueError, match="already has a child 'c'"):
        parent.add_child(Environment("c"))
    assert len(parent.children) == 1


def test_child_dotted_path() -> None:
    root, a, b = Environment("root"), Environment("a"), Environment("b")
    root.add_child(a)
    a.add_child(b)
    assert root.child("a") is a
    assert root.child("a.b") is b
    assert a.child("b") is b
    with pytest.raises(KeyError):
        root.child("a.c")
    with pytest.raises(KeyError):
        root.child("b")  # not a direct child of root


def test_class_name_default_and_override() -> None:
    assert Environment().name == "environment"
    assert Environment("x").name == "x"


# --- snapshot / restore ------------------------------------------------------------


def _tree() -> Environment:
    root, a, b = Environment("root"), Environment("a"), Environment("b")
    root.add_child(a)
    a.add_child(b)
    return root


def test_snapshot_restore_round_trip_with_children() -> None:
    source = _tree()
    source.state.update(step=3, price=1.5)
    source.child("a").state["population"] = 10
    source.child("a.b").state["stock"] = [1, 2]
    snapshot = source.snapshot()
    assert snapshot == {
        "state": {"step": 3, "price": 1.5},
        "children": {
            "a": {
                "state": {"population": 10},
                "children": {"b": {"state": {"stock": [1, 2]}, "children": {}}},
            }
        },
    }

    replica = _tree()
    replica.restore(snapshot)
    assert replica.state == source.state
    assert replica.child("a").state == {"population": 10}
    assert replica.child("a.b").state == {"stock": [1, 2]}
    assert replica.snapshot() == snapshot


def test_snapshot_is_a_copy_of_the_state() -> None:
    env = Environment()
    env.state["step"] = 1
    snapshot = env.snapshot()
    env.state["step"] = 2
    env.state["new"] = True
    assert snapshot["state"] == {"step": 1}


def test_restore_does_not_alias_the_snapshot() -> None:
    env = Environment()
    snapshot = {"state": {"step": 1}, "children": {}}
    env.restore(snapshot)
    env.state["step"] = 5
    assert snapshot["state"] == {"step": 1}


def test_restore_without_children_key() -> None:
    env = _tree()
    env.restore({"state": {"x": 1}})
    assert env.state == {"x": 1}


# --- step protocol defaults ----------------------------------------------------------


def test_default_observe_is_the_state() -> None:
    env = Environment()
    env.state["k"] = "v"
    env.prepare()  # a no-op by default
    assert env.observe(None) == {"k": "v"}  # type: ignore[arg-type]


def test_default_reduce_counts() -> None:
    env = Environment()
    partial = env.reduce(_batch([0, 0, 1, 1], [1.0, float("nan"), 3.0, 4.0]))
    assert partial == {"n": 4, "valid": 3}
    assert all(type(v) is int for v in partial.values())  # plain data for shipping


def test_default_reduce_empty_batch() -> None:
    assert Environment().reduce(_batch([], [])) == {"n": 0, "valid": 0}


def test_default_combine_sums_partials() -> None:
    env = Environment()
    partials = [
        env.reduce(_batch([0, 0, 1], [1.0, float("nan"), 2.0])),
        env.reduce(_batch([0, 1], [float("nan"), float("nan")])),
        env.reduce(_batch([], [])),
    ]
    assert env.combine(partials) == {"n": 5, "valid": 2}
    assert env.combine([]) == {"n": 0, "valid": 0}


async def test_default_apply_sets_step_and_emits_step_end() -> None:
    env = Environment("world")
    calls: Calls = []
    env.on("step_end", _recorder(calls, "l"))
    await env.apply(4, {"n": 2, "valid": 1})
    assert env.state["step"] == 4
    assert calls == []  # fired in the background: apply does not wait for listeners
    await env.drain()
    assert calls == [("l", "step_end", {"step": 4, "env": "world", "n": 2, "valid": 1})]


async def test_a_slow_listener_never_holds_up_apply_and_drain_waits_for_it() -> None:
    import time

    world = Environment("world")
    room = world.add_child(Environment("room"))
    calls: Calls = []

    async def slow(event: str, payload: Mapping[str, Any]) -> None:
        await asyncio.sleep(0.5)
        calls.append(("slow", event, dict(payload)))

    world.on("step_end", slow)  # the parent hears the child's event (bubbling)
    started = time.perf_counter()
    for step in (1, 2, 3):
        await room.apply(step, {"n": 1, "valid": 1})
    assert time.perf_counter() - started < 0.3
    assert room.listener_tasks is world.listener_tasks  # one set for the tree
    await room.drain()
    assert sorted(c[2]["step"] for c in calls) == [1, 2, 3]
    assert not room.fire("nobody_listens", {})  # nothing scheduled for an unheard event
