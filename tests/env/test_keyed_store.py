"""KeyedStore: partitioned keyed state, ops applied in a fixed order at commit."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megasim.env.base import KeyedOp
from megasim.env.keyed_store import (
    KeyedStateError,
    PartitionedStore,
    StorePartition,
    in_process_store,
    partition_of,
)


def ops_of_three_shards() -> list[list[KeyedOp]]:
    shards: list[list[KeyedOp]] = [[], [], []]
    for agent in range(30):
        shard = shards[agent % 3]
        shard.append(KeyedOp(f"room/{agent % 4}", agent, 0, "append", {"a": agent}, 5))
        shard.append(KeyedOp(f"follows/{agent}", agent, 1, "add", (agent * 7) % 30))
        shard.append(KeyedOp("last", agent, 2, "set", agent))
    return shards


async def everything(store: PartitionedStore) -> dict[str, Any]:
    keys = [f"room/{r}" for r in range(4)] + [f"follows/{a}" for a in range(30)] + ["last"]
    return await store.read(keys)


async def test_result_does_not_depend_on_partitions_or_staging_order() -> None:
    results = []
    for partitions, seed in ((1, 0), (3, 1), (7, 2)):
        store = in_process_store(partitions)
        shards = list(enumerate(ops_of_three_shards()))
        random.Random(seed).shuffle(shards)
        for index, ops in shards:
            await store.stage(1, index, random.Random(seed).sample(ops, len(ops)))
        await store.commit(1)
        results.append(await everything(store))
    assert results[0] == results[1] == results[2]
    rooms = results[0]
    assert rooms["room/1"] == tuple({"a": a} for a in (9, 13, 17, 21, 25, 29)[-5:])  # kept 5
    assert rooms["follows/3"] == [21]
    assert rooms["last"] == 29  # applied in order: the highest order writes last


async def test_staging_again_replaces_so_a_rerun_shard_counts_once() -> None:
    store = in_process_store(2)
    op = KeyedOp("room/0", 1, 0, "append", "hello")
    await store.stage(1, 0, [op])
    await store.stage(1, 0, [op])  # the shard was rerun after a failure
    await store.commit(1)
    assert await store.read(["room/0"]) == {"room/0": ("hello",)}
    await store.commit(1)  # nothing left staged
    assert await store.read(["room/0"]) == {"room/0": ("hello",)}


def test_commit_applies_only_its_step() -> None:
    part = StorePartition(0, 1)
    part.stage(1, 0, [KeyedOp("k", 0, 0, "append", "one")])
    part.stage(2, 1, [KeyedOp("k", 0, 0, "append", "two")])
    assert part.commit(1) == 1
    assert part.read(["k"]) == {"k": ("one",)}
    assert part.commit(2) == 1
    assert part.read(["k", "absent"]) == {"k": ("one", "two")}


def test_sets_delete_and_type_errors() -> None:
    part = StorePartition(0, 1)
    ops = [
        KeyedOp("s", 0, 0, "add", 3),
        KeyedOp("s", 1, 0, "add", 1),
        KeyedOp("s", 2, 0, "discard", 3),
        KeyedOp("gone", 3, 0, "set", 1),
        KeyedOp("gone", 4, 0, "delete", None),
    ]
    part.stage(1, 0, ops)
    part.commit(1)
    assert part.read(["s", "gone"]) == {"s": [1]}
    part.stage(2, 0, [KeyedOp("s", 0, 0, "append", 1)])
    with pytest.raises(KeyedStateError, match="not a list"):
        part.commit(2)
    part.stage(3, 0, [KeyedOp("x", 0, 0, "merge", 1)])
    with pytest.raises(KeyedStateError, match="unknown op kind 'merge'"):
        part.commit(3)


def test_values_that_would_not_survive_a_json_checkpoint_are_refused(tmp_path: Path) -> None:
    part = StorePartition(0, 1)
    part.stage(1, 0, [KeyedOp("s", 0, 0, "add", (1, 2))])
    with pytest.raises(KeyedStateError, match="set members must be str, int"):
        part.commit(1)
    part = StorePartition(0, 1)
    part.stage(1, 0, [KeyedOp("x", 0, 0, "set", float("nan"))])
    part.commit(1)
    with pytest.raises(KeyedStateError, match="key 'x' is not JSON data"):
        part.save(str(tmp_path))


async def test_checkpoint_round_trip_with_another_partition_count(tmp_path: Path) -> None:
    store = in_process_store(3)
    for index, ops in enumerate(ops_of_three_shards()):
        await store.stage(1, index, ops)
    await store.commit(1)
    await store.save(tmp_path)
    assert sorted(p.name for p in (tmp_path / "keyed").iterdir()) == [
        "partition=0.jsonl",
        "partition=1.jsonl",
        "partition=2.jsonl",
    ]
    for partitions in (1, 3, 5):
        restored = in_process_store(partitions)
        await restored.stage(2, 0, [KeyedOp("room/0", 0, 0, "append", "stale")])
        await restored.restore(tmp_path)  # staged ops are dropped
        await restored.commit(2)
        assert await everything(restored) == await everything(store)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 50),
            st.sampled_from(["add", "discard"]),
            st.integers(0, 5),
        ),
        max_size=60,
    ),
    st.integers(1, 6),
)
def test_any_ops_match_a_sequential_reference(
    raw: list[tuple[str, int, str, int]], partitions: int
) -> None:
    # lists for "a", sets for "b" and "c": kinds are fixed per key, as environments use them
    ops = [
        KeyedOp(key, order, seq, "append" if key == "a" else kind, value, 4)
        for seq, (key, order, kind, value) in enumerate(raw)
    ]
    parts = [StorePartition(i, partitions) for i in range(partitions)]
    for part in parts:
        part.stage(1, 0, [op for op in ops if partition_of(op.key, partitions) == part.index])
        part.commit(1)
    reference: dict[str, Any] = {}
    for op in sorted(ops, key=lambda o: (o.order, o.seq)):
        if op.kind == "append":
            reference[op.key] = [*reference.get(op.key, []), op.value][-4:]
        else:
            members = reference.setdefault(op.key, set())
            (members.add if op.kind == "add" else members.discard)(op.value)
    found: dict[str, Any] = {}
    for part in parts:
        found.update(part.read(["a", "b", "c"]))
    expected = {k: (tuple(v) if isinstance(v, list) else sorted(v)) for k, v in reference.items()}
    assert found == expected
