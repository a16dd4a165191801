"""ChatRoom: rooms' transcripts as keyed state, opinions reduced across shards."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from megasim.agent import Agent, PersonaTable
from megasim.env.base import DecisionBatch
from megasim.env.chatroom import ChatRoom, Post, room_key
from megasim.env.keyed_store import in_process_store


class _StubModel:
    name = "stub"
    immediate = True


_PERSONAS = PersonaTable(pa.table({"x": [0]}))


def _agents(groups: list[int]) -> list[Agent]:
    return [Agent(i, 0, _PERSONAS, _StubModel(), group=g) for i, g in enumerate(groups)]


def _decisions(
    step: int, ids: list[int], groups: list[int], values: list[float | None]
) -> pa.Table:
    return pa.table(
        {
            "step": [step] * len(ids),
            "agent_id": pa.array(ids, pa.int64()),
            "group": pa.array(groups, pa.int32()),
            "value": pa.array(values, pa.float64()),
            "valid": [v is not None for v in values],
            "text": [None if v is None else f"I say {v}" for v in values],
        }
    )


def test_a_shard_reads_only_its_rooms_and_sees_their_posts() -> None:
    env = ChatRoom(room_sizes=[2, 2, 2], steps=3, statement="s", window=2)
    agents = _agents([0, 2, 2])
    assert env.keys_for(agents) == [room_key(0), room_key(2)]
    env.load_keyed({room_key(2): ({"agent": 5, "step": 1, "opinion": 40.0, "text": "hi"},)})
    env.prepare()
    obs = env.observe(agents[1])
    assert obs.room == 2
    assert obs.step == 1
    assert obs.members == 2
    assert obs.recent == (Post(5, 1, 40.0, "hi"),)
    assert env.observe(agents[2]) is obs  # one observation per room, shared
    assert env.observe(agents[0]).recent == ()


async def test_posts_are_appended_in_a_seeded_order_independent_of_shards() -> None:
    ids, groups = list(range(10)), [i % 2 for i in range(10)]
    values: list[float | None] = [float(10 * i) for i in range(10)]
    values[3] = None  # an invalid answer posts nothing
    env = ChatRoom(room_sizes=[5, 5], steps=2, statement="s", window=3, seed=7)

    async def transcript(splits: list[slice]) -> dict[str, object]:
        store = in_process_store(2)
        for shard, part in enumerate(splits):
            table = _decisions(1, ids[part], groups[part], values[part])
            await store.stage(1, shard, env.writes(1, table))
        await store.commit(1)
        return await store.read([room_key(0), room_key(1)])

    one = await transcript([slice(0, 10)])
    three = await transcript([slice(0, 3), slice(3, 7), slice(7, 10)])
    assert one == three
    room1 = one[room_key(1)]
    assert isinstance(room1, tuple)
    assert len(room1) == 3
    assert all(post["agent"] % 2 == 1 and post["agent"] != 3 for post in room1)
    other_seed = ChatRoom(room_sizes=[5, 5], steps=2, statement="s", window=3, seed=8)
    orders = {
        tuple(op.order for op in e.writes(1, _decisions(1, ids, groups, values)))
        for e in (env, other_seed)
    }
    assert len(orders) == 2


async def test_room_means_are_combined_exactly_and_remembered() -> None:
    env = ChatRoom(room_sizes=[2, 2], steps=2, statement="s")
    batch = DecisionBatch(
        agent_ids=np.arange(4, dtype=np.int64),
        groups=np.array([0, 0, 1, 1], dtype=np.int32),
        values=np.array([10.0, 20.0, 90.0, np.nan]),
        valid=np.array([True, True, True, False]),
    )
    half = DecisionBatch(batch.agent_ids[:2], batch.groups[:2], batch.values[:2], batch.valid[:2])
    rest = DecisionBatch(batch.agent_ids[2:], batch.groups[2:], batch.values[2:], batch.valid[2:])
    outcome = env.combine([env.reduce(half), env.reduce(rest)])
    assert outcome == env.combine([env.reduce(batch)])
    assert outcome["n"] == 4
    assert outcome["valid"] == 3
    assert outcome["invalid"] == 1
    assert outcome["mean"] == 40.0
    assert [r["mean"] for r in outcome["rooms"]] == [15.0, 90.0]
    assert outcome["room_spread"] == 75.0
    await env.apply(1, outcome)
    assert env.state["means"] == [15.0, 90.0]
    env.prepare()
    assert env.observe(_agents([1])[0]).room_mean == 90.0
