"""Keyed environment state in Ray actors: one StorePartition per actor.

Shards (and the driver, to commit and checkpoint) reach the partitions through their
actor handles; ``PartitionedStore`` makes one call per partition per operation. Ops
travel with Ray's own serialisation between our actors, never from outside peers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray.exceptions import RayActorError

from megasim.env.base import KeyedOp
from megasim.env.keyed_store import PartitionedStore, StorePartition

RemotePartition = ray.remote(StorePartition)


class ActorPartition:
    """A PartitionClient over one partition actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def read(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = await self.handle.read.remote(keys)
        return found

    async def stage(self, step: int, shard: int, ops: list[KeyedOp]) -> None:
        await self.handle.stage.remote(step, shard, ops)

    async def commit(self, step: int) -> int:
        applied: int = await self.handle.commit.remote(step)
        return applied

    async def save(self, directory: str) -> int:
        saved: int = await self.handle.save.remote(directory)
        return saved

    async def restore(self, directory: str) -> int:
        restored: int = await self.handle.restore.remote(directory)
        return restored


def spawn_partitions(count: int, spread: bool) -> list[Any]:
    """``count`` partition actors (no CPU reserved: they mostly wait), spread over nodes."""
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
    if spread:
        options["scheduling_strategy"] = "SPREAD"
    return [RemotePartition.options(**options).remote(i, count) for i in range(count)]


def actor_store(handles: list[Any]) -> PartitionedStore:
    return PartitionedStore([ActorPartition(handle) for handle in handles])


async def lost_partitions(handles: list[Any], timeout_s: float = 10.0) -> list[int]:
    """Indexes of the partition actors that no longer answer."""
    lost = []
    for index, handle in enumerate(handles):
        try:
            await asyncio.wait_for(handle.read.remote([]), timeout=timeout_s)
        except (TimeoutError, RayActorError):
            lost.append(index)
    return lost
