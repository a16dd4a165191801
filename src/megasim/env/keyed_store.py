"""Keyed shared state split by key over partitions (the ``KeyedStore`` of env/base.py).

A ``StorePartition`` owns the keys that hash to it and the ops shards staged for them;
it is plain synchronous code, so the local runtime calls it in-process and the Ray
runtime hosts each one in an actor (runtime/ray_store.py). ``PartitionedStore`` is what
shards and the driver talk to: it splits keys and ops by partition and makes one call
per partition, never one per agent or key.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from megasim.env.base import KeyedOp, PartitionClient

KEYED_DIR = "keyed"


def partition_of(key: str, partitions: int) -> int:
    """Stable across processes and runs (unlike ``hash``), so any node finds a key's owner."""
    return zlib.crc32(key.encode("utf-8")) % partitions


_SCALARS = (str, int, float, bool, type(None))


def _set_order(item: Any) -> tuple[str, Any]:
    return (type(item).__name__, item)


class KeyedStateError(ValueError):
    """An op that does not fit the key's value (``append`` to a set, an unknown kind)."""


class StorePartition:
    """The values of one partition's keys, and the ops staged for the current step."""

    def __init__(self, index: int, partitions: int) -> None:
        self.index = index
        self.partitions = partitions
        self.values: dict[str, Any] = {}  # list (append), set (add/discard) or plain value
        self._staged: dict[int, tuple[int, list[KeyedOp]]] = {}  # shard -> (step, ops)

    def read(self, keys: Iterable[str]) -> dict[str, Any]:
        """Lists as tuples, sets as sorted lists; items and plain values are shared, not
        copied (a million posts are read per step): treat them as read-only."""
        found: dict[str, Any] = {}
        values = self.values
        for key in keys:
            if key in values:
                value = values[key]
                if isinstance(value, list):
                    value = tuple(value)
                elif isinstance(value, set):
                    value = sorted(value, key=_set_order)
                found[key] = value
        return found

    def stage(self, step: int, shard: int, ops: Sequence[KeyedOp]) -> None:
        """Hold ``shard``'s ops for ``step``, replacing what it staged before (a rerun)."""
        self._staged[shard] = (step, list(ops))

    def commit(self, step: int) -> int:
        """Apply the staged ops of ``step`` in (order, seq) order; returns how many."""
        ops = [op for _, (s, batch) in sorted(self._staged.items()) if s == step for op in batch]
        ops.sort(key=lambda op: (op.order, op.seq))
        for op in ops:
            self._apply(op)
        self._staged = {k: v for k, v in self._staged.items() if v[0] > step}
        return len(ops)

    def _apply(self, op: KeyedOp) -> None:
        values = self.values
        if op.kind == "append":
            current = values.setdefault(op.key, [])
            if not isinstance(current, list):
                raise KeyedStateError(f"append to key {op.key!r}, which is not a list")
            current.append(op.value)
            if op.keep > 0 and len(current) > op.keep:
                del current[: len(current) - op.keep]
        elif op.kind in ("add", "discard"):
            if not isinstance(op.value, _SCALARS):  # must survive a JSON checkpoint as is
                raise KeyedStateError(
                    f"{op.kind} on key {op.key!r}: set members must be str, int, float, "
                    f"bool or None, not {type(op.value).__name__}"
                )
            members = values.setdefault(op.key, set())
            if not isinstance(members, set):
                raise KeyedStateError(f"{op.kind} on key {op.key!r}, which is not a set")
            if op.kind == "add":
                members.add(op.value)
            else:
                members.discard(op.value)
        elif op.kind == "set":
            values[op.key] = op.value
        elif op.kind == "delete":
            values.pop(op.key, None)
        else:
            raise KeyedStateError(f"unknown op kind {op.kind!r} (key {op.key!r})")

    # --- checkpoints: JSON lines, one key each ------------------------------------------
    def save(self, directory: str) -> int:
        """Write this partition's keys to ``<directory>/keyed/partition=<index>.jsonl``.

        Values must be JSON data (lists, not tuples; str keys; finite numbers) so that a
        resumed run sees what an unbroken one does; anything else is refused here."""
        folder = Path(directory) / KEYED_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"partition={self.index}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for key in sorted(self.values):
                value = self.values[key]
                if isinstance(value, set):
                    record = {"key": key, "set": sorted(value, key=_set_order)}
                elif isinstance(value, list):
                    record = {"key": key, "list": value}
                else:
                    record = {"key": key, "value": value}
                try:
                    line = json.dumps(record, allow_nan=False)
                except (TypeError, ValueError) as exc:
                    raise KeyedStateError(f"key {key!r} is not JSON data: {exc}") from exc
                handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return len(self.values)

    def restore(self, directory: str) -> int:
        """Take this partition's keys from every partition file, so a run can resume with
        another number of partitions."""
        self.values = {}
        self._staged = {}
        for path in sorted((Path(directory) / KEYED_DIR).glob("partition=*.jsonl")):
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    key = record["key"]
                    if partition_of(key, self.partitions) != self.index:
                        continue
                    if "set" in record:
                        self.values[key] = set(record["set"])
                    elif "list" in record:
                        self.values[key] = list(record["list"])
                    else:
                        self.values[key] = record["value"]
        return len(self.values)


class InProcessPartition:
    """A StorePartition called directly (local runtime)."""

    def __init__(self, partition: StorePartition) -> None:
        self.partition = partition

    async def read(self, keys: list[str]) -> dict[str, Any]:
        return self.partition.read(keys)

    async def stage(self, step: int, shard: int, ops: list[KeyedOp]) -> None:
        self.partition.stage(step, shard, ops)

    async def commit(self, step: int) -> int:
        return self.partition.commit(step)

    async def save(self, directory: str) -> int:
        return self.partition.save(directory)

    async def restore(self, directory: str) -> int:
        return self.partition.restore(directory)


class PartitionedStore:
    """A KeyedStore over partitions: one call per partition per operation."""

    def __init__(self, partitions: Sequence[PartitionClient]) -> None:
        if not partitions:
            raise ValueError("a keyed store needs at least one partition")
        self.partitions = list(partitions)

    def _split_keys(self, keys: Iterable[str]) -> list[list[str]]:
        parts: list[list[str]] = [[] for _ in self.partitions]
        n = len(self.partitions)
        for key in keys:
            parts[partition_of(key, n)].append(key)
        return parts

    async def read(self, keys: Sequence[str]) -> dict[str, Any]:
        parts = self._split_keys(keys)
        found = await asyncio.gather(
            *(p.read(ks) for p, ks in zip(self.partitions, parts, strict=True) if ks)
        )
        merged: dict[str, Any] = {}
        for values in found:
            merged.update(values)
        return merged

    async def stage(self, step: int, shard: int, ops: Sequence[KeyedOp]) -> None:
        n = len(self.partitions)
        parts: list[list[KeyedOp]] = [[] for _ in self.partitions]
        for op in ops:
            parts[partition_of(op.key, n)].append(op)
        # every partition, even with no ops: a rerun shard must replace what it staged before
        await asyncio.gather(
            *(p.stage(step, shard, part) for p, part in zip(self.partitions, parts, strict=True))
        )

    async def commit(self, step: int) -> None:
        await asyncio.gather(*(p.commit(step) for p in self.partitions))

    async def save(self, directory: Path) -> None:
        await asyncio.gather(*(p.save(str(directory)) for p in self.partitions))

    async def restore(self, directory: Path) -> None:
        await asyncio.gather(*(p.restore(str(directory)) for p in self.partitions))


def in_process_store(partitions: int) -> PartitionedStore:
    """The local runtime's store: ``partitions`` StorePartitions in this process."""
    return PartitionedStore(
        [InProcessPartition(StorePartition(i, partitions)) for i in range(partitions)]
    )
