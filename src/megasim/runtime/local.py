"""LocalRuntime: shards in this process (the default; never imports Ray)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pyarrow as pa
import pyarrow.compute as pc

from megasim.activity import ActivityPlan
from megasim.env.base import KeyedStore
from megasim.env.keyed_store import in_process_store
from megasim.message import Message
from megasim.model.base import ModelClient
from megasim.model.factory import build_models
from megasim.model.journal import StepJournal
from megasim.plugins import make_scenario
from megasim.runtime.base import ProgressFn, ShardStepResult, model_layer_metrics
from megasim.runtime.checkpoint import read_agent_states
from megasim.runtime.mailbox import router_for
from megasim.runtime.shard import AgentShard
from megasim.store.run_dir import RunDirectory

if TYPE_CHECKING:
    from megasim.config import SimulationConfig


def models_used(population: pa.Table) -> set[str]:
    return {str(name) for name in pc.unique(population.column("model")).to_pylist()}


def shard_slices(rows: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous (offset, length) slices, sizes differing by at most one."""
    base, extra = divmod(rows, shards)
    slices, offset = [], 0
    for index in range(shards):
        length = base + (1 if index < extra else 0)
        slices.append((offset, length))
        offset += length
    return slices


class LocalRuntime:
    """Runs ``shards`` AgentShards concurrently on this event loop, sharing model clients."""

    def __init__(
        self,
        config: SimulationConfig,
        population: pa.Table,
        run_dir: RunDirectory,
        models: Mapping[str, ModelClient] | None = None,
    ) -> None:
        """Like RayRuntime's actors, it builds agents and environments with the scenario
        the config names (``config.scenario``, resolved by megasim.plugins)."""
        self.config = config
        self.scenario = make_scenario(config.scenario)
        self.population = population
        self.run_dir = run_dir
        self._owns_models = models is None
        self.models: dict[str, ModelClient] = dict(models or {})
        self.shards: list[AgentShard] = []
        self.store: KeyedStore | None = None
        self._process: psutil.Process | None = None
        # one write-ahead log of answers for every in-process shard (they share models)
        self.journal = StepJournal(run_dir, writer="local")

    async def start(self) -> None:
        if self._owns_models:  # one client per model, shared by every in-process shard
            self.models = build_models(
                self.config.models, models_used(self.population), journal=self.journal
            )
        shards = min(self.config.runtime.shards, max(1, self.population.num_rows))
        slices = shard_slices(self.population.num_rows, shards)
        for index, (offset, length) in enumerate(slices):
            part = self.population.slice(offset, length)
            agents = self.scenario.build_agents(self.config, part, self.models)
            env = self.scenario.build_env(self.config, self.population)
            if env.keyed and self.store is None:
                self.store = in_process_store(self.config.runtime.env_partitions)
            activity = ActivityPlan.build(self.config.activity, self.config.seed, part)
            self.shards.append(
                AgentShard(index, agents, env, self.run_dir, self.store, activity=activity)
            )
        self.router = router_for(self.population, slices)

    def route(self, messages: Sequence[Message]) -> dict[int, list[Message]]:
        return self.router.route(messages)

    async def step(
        self,
        step: int,
        env_snapshot: Mapping[str, Any],
        progress: ProgressFn | None = None,
        inboxes: Mapping[int, list[Message]] | None = None,
    ) -> list[ShardStepResult]:
        inboxes = inboxes or {}
        journaled = self.journal.clients > 0  # stand-ins only: no log, no cost
        if journaled:
            self.journal.begin(step)
        try:
            results = await asyncio.gather(
                *(
                    s.step(step, env_snapshot, progress, inboxes.get(s.index, []))
                    for s in self.shards
                )
            )
        finally:
            if journaled:
                self.journal.end()
        if self.store is not None:
            await self.store.commit(step)
        return list(results)

    async def model_metrics(self) -> dict[str, Any]:
        return model_layer_metrics(self.models)

    def shard_health(self) -> list[dict[str, Any]]:
        """Every shard lives in this process and shares its model clients, so CPU, memory
        and calls in flight are the process's (``shared: true``)."""
        if self._process is None:
            self._process = psutil.Process()
            self._process.cpu_percent()  # the first reading is meaningless; prime it
        in_flight = sum(
            int(snapshot.get("in_flight", 0))
            for snapshot in model_layer_metrics(self.models).values()
        )
        common = {
            "node": socket.gethostname(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "cpu_percent": self._process.cpu_percent(),
            "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
            "model_calls_in_flight": in_flight,
            "shared": True,
            "state": "ok",
        }
        return [
            {"shard": shard.index, "agents": len(shard.agents), **common} for shard in self.shards
        ]

    async def save(self, directory: Path) -> None:
        for shard in self.shards:
            shard.save_states(directory)
        if self.store is not None:
            await self.store.save(directory)

    async def restore(self, directory: Path) -> None:
        states = read_agent_states(directory)
        for shard in self.shards:
            shard.load_states(states)
        if self.store is not None:
            await self.store.restore(directory)

    async def close(self) -> None:
        self.journal.end()
        self.shards.clear()
        if self._owns_models:
            for model in self.models.values():
                await model.aclose()
            self.models.clear()
