"""ShardActor: one AgentShard hosted in a Ray actor (the unit RayRuntime places on nodes).

The actor builds its own model clients and agents from the config and its population
slice, so only the config, the slice and the step inputs travel to it; it reports
progress and resource use for the driver's health polling.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import ray

from megasim.activity import ActivityPlan
from megasim.config import SimulationConfig
from megasim.message import Message
from megasim.model.base import ModelClient
from megasim.model.factory import build_models
from megasim.model.journal import StepJournal
from megasim.plugins import make_scenario
from megasim.runtime.base import ShardStepResult, model_layer_metrics
from megasim.runtime.checkpoint import read_agent_states
from megasim.runtime.local import models_used
from megasim.runtime.ray_store import actor_store
from megasim.runtime.shard import AgentShard
from megasim.store.run_dir import RunDirectory

_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


def this_node_names() -> frozenset[str]:
    """What identifies this actor's Ray node for endpoints' ``node``: its IP, node id and
    custom resources (such as the one a shard is pinned with)."""
    node_id = ray.get_runtime_context().get_node_id()
    names = {str(ray.util.get_node_ip_address()), str(node_id)}  # type: ignore[no-untyped-call]
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if node["NodeID"] == node_id:
            names.update(k for k in node["Resources"] if k not in _BUILTIN_RESOURCES)
    return frozenset(n for n in names if not n.startswith("node:"))


class ShardActor:
    """Hosts one AgentShard inside a Ray actor (wrapped with ``ray.remote`` below)."""

    def __init__(
        self,
        config_data: dict[str, Any],
        everyone: pa.Table,
        index: int,
        run_path: str,
        partitions: list[Any],
        rows: tuple[int, int],
    ) -> None:
        """``everyone``: the whole population (one object in Ray's store, shared by every
        actor of a node): the environment is built over all agents, as in the driver;
        ``rows``: (offset, length) of this shard's agents in it."""
        config = SimulationConfig.model_validate(config_data)
        population = everyone.slice(*rows)
        scenario = make_scenario(config.scenario)
        run_dir = RunDirectory(Path(run_path))
        # this actor's write-ahead log of answers; it replays only its own agents' answers
        # (a resume may have logged them under another shard layout)
        own = frozenset(int(i) for i in population.column("agent_id").to_pylist())
        self.journal = StepJournal(run_dir, writer=f"shard={index}", agent_ids=own)
        self.models: dict[str, ModelClient] = build_models(
            config.models, models_used(population), this_node_names(), self.journal
        )
        agents = scenario.build_agents(config, population, self.models)
        env = scenario.build_env(config, everyone)  # its state: the driver's snapshot
        store = actor_store(partitions) if partitions else None
        activity = ActivityPlan.build(config.activity, config.seed, population)
        self.shard = AgentShard(index, agents, env, run_dir, store, activity=activity)
        self.done = 0
        self.step_no = 0
        self.process = psutil.Process()
        self.process.cpu_percent()  # prime the counter

    def _progress(self, _: int, done: int) -> None:
        self.done = done

    async def step(
        self, step: int, snapshot: Mapping[str, Any], inbox: list[Message]
    ) -> ShardStepResult:
        self.step_no, self.done = step, 0
        journaled = self.journal.clients > 0
        if journaled:
            self.journal.begin(step)
        try:
            result = await self.shard.step(step, snapshot, self._progress, inbox)
        finally:
            if journaled:
                self.journal.end()
        result.node = ray.get_runtime_context().get_node_id()
        result.model_layer = model_layer_metrics(self.models)
        return result

    def health(self) -> dict[str, Any]:
        """Progress and resource use, polled by the driver while a step runs."""
        return {
            "shard": self.shard.index,
            "agents": len(self.shard.agents),
            "step": self.step_no,
            "done": self.done,
            "node": ray.get_runtime_context().get_node_id(),
            "host": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "pid": os.getpid(),
            "cpu_percent": self.process.cpu_percent(),
            "rss_mb": self.process.memory_info().rss / 2**20,
            "model_calls_in_flight": sum(
                int(snapshot.get("in_flight", 0))
                for snapshot in model_layer_metrics(self.models).values()
            ),
        }

    def use_partitions(self, partitions: list[Any]) -> None:
        """Keyed state moved to new partition actors (after one was lost)."""
        self.shard.store = actor_store(partitions)

    def save(self, directory: str) -> int:
        return self.shard.save_states(Path(directory))

    def restore(self, directory: str) -> None:
        self.shard.load_states(read_agent_states(Path(directory)))

    async def close(self) -> None:
        self.journal.end()
        for model in self.models.values():
            await model.aclose()


RemoteShard = ray.remote(ShardActor)
