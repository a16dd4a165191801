"""RayRuntime: the same AgentShard, hosted in Ray async actors over a cluster.

One actor per shard (thousands to a million agents each), one remote call per shard
per step. Actors build their own model clients and agents from the config and their
slice of the population, and write their decisions to the shared run directory; only
reductions travel back. A shard whose actor dies mid-step is rebuilt (on another node
if its node is gone) from the last checkpoint and the step is rerun on it alone:
its step file is replaced atomically, so no decision is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from megasim.config import SimulationConfig
from megasim.message import Message
from megasim.model.base import ModelClient
from megasim.model.factory import build_models
from megasim.runtime.base import ProgressFn, ShardStepResult, model_layer_metrics
from megasim.runtime.checkpoint import read_agent_states
from megasim.runtime.local import models_used, shard_slices
from megasim.runtime.mailbox import router_for
from megasim.runtime.shard import AgentShard
from megasim.scenarios import get_scenario
from megasim.store.run_dir import RunDirectory

_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)
_POLL_S = 0.25


class ShardActor:
    """Hosts one AgentShard inside a Ray actor (wrapped with ``ray.remote`` below)."""

    def __init__(
        self, config_data: dict[str, Any], population: pa.Table, index: int, run_path: str
    ) -> None:
        config = SimulationConfig.model_validate(config_data)
        scenario = get_scenario(config.scenario)
        self.models: dict[str, ModelClient] = build_models(config.models, models_used(population))
        agents = scenario.build_agents(config, population, self.models)
        env = scenario.build_env(config, population)  # replaced by the driver's snapshot
        self.shard = AgentShard(index, agents, env, RunDirectory(Path(run_path)))
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
        result = await self.shard.step(step, snapshot, self._progress, inbox)
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
            "pid": os.getpid(),
            "cpu_percent": self.process.cpu_percent(),
            "rss_mb": self.process.memory_info().rss / 2**20,
            "model_calls_in_flight": sum(
                int(snapshot.get("in_flight", 0))
                for snapshot in model_layer_metrics(self.models).values()
            ),
        }

    def save(self, directory: str) -> int:
        return self.shard.save_states(Path(directory))

    def restore(self, directory: str) -> None:
        self.shard.load_states(read_agent_states(Path(directory)))

    async def close(self) -> None:
        for model in self.models.values():
            await model.aclose()


RemoteShard = ray.remote(ShardActor)


class RayRuntime:
    """Shards as Ray actors; the driver code (Simulation, scenario) is unchanged."""

    def __init__(self, config: SimulationConfig, population: pa.Table, run_dir: RunDirectory):
        self.config = config
        self.population = population
        self.run_dir = run_dir
        self.actors: list[Any] = []
        self.slices: list[tuple[int, int]] = []
        self.last_checkpoint: Path | None = None
        self.health: dict[int, dict[str, Any]] = {}
        self._model_layer: dict[int, dict[str, Any]] = {}  # from each shard's last result
        self._started_ray = False

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if not ray.is_initialized():
            address = self.config.runtime.address
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            self._started_ray = True
        shards = min(self.config.runtime.shards, max(1, self.population.num_rows))
        self.slices = shard_slices(self.population.num_rows, shards)
        self.actors = [self._spawn(index) for index in range(shards)]
        self.router = router_for(self.population, self.slices)
        # wait until every actor is built (model servers loaded, agents created)
        await asyncio.gather(*(actor.health.remote() for actor in self.actors))

    def _spawn(self, index: int) -> Any:
        runtime = self.config.runtime
        offset, length = self.slices[index]
        options: dict[str, Any] = {
            "num_cpus": runtime.cpus_per_shard,
            "name": None,
            "max_restarts": 0,  # the driver rebuilds lost shards from checkpoints itself
        }
        if index in runtime.shard_resources:
            options["resources"] = runtime.shard_resources[index]
        elif runtime.placement == "spread":
            options["scheduling_strategy"] = "SPREAD"
        return RemoteShard.options(**options).remote(
            self.config.model_dump(mode="json"),
            self.population.slice(offset, length),
            index,
            str(self.run_dir.path),
        )

    async def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(*_LOST):
                await actor.close.remote()
            ray.kill(actor)
        self.actors.clear()
        if self._started_ray:
            ray.shutdown()

    # --- steps -----------------------------------------------------------------------
    def route(self, messages: Sequence[Message]) -> dict[int, list[Message]]:
        return self.router.route(messages)

    async def step(
        self,
        step: int,
        env_snapshot: Mapping[str, Any],
        progress: ProgressFn | None = None,
        inboxes: Mapping[int, list[Message]] | None = None,
    ) -> list[ShardStepResult]:
        snapshot = dict(env_snapshot)
        inboxes = inboxes or {}
        poller = asyncio.create_task(self._poll(progress))
        try:
            results = await asyncio.gather(
                *(
                    self._step_shard(index, step, snapshot, inboxes.get(index, []))
                    for index in range(len(self.actors))
                )
            )
        finally:
            poller.cancel()
        return list(results)

    async def _step_shard(
        self, index: int, step: int, snapshot: dict[str, Any], inbox: list[Message]
    ) -> ShardStepResult:
        restarts = 0
        while True:
            try:
                result: ShardStepResult = await self.actors[index].step.remote(
                    step, snapshot, inbox
                )
                self._model_layer[index] = result.model_layer
                return result
            except _LOST as exc:
                if restarts >= self.config.runtime.max_shard_restarts:
                    raise
                restarts += 1
                self.run_dir.append_event(
                    "shard_lost", shard=index, step=step, reason=type(exc).__name__
                )
                await self._rebuild(index)
                self.run_dir.append_event("shard_restarted", shard=index, step=step)

    async def _rebuild(self, index: int) -> None:
        """A fresh actor for shard ``index`` with the agent state of the last checkpoint."""
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actors[index])
        actor = self._spawn(index)
        if self.last_checkpoint is not None:
            await actor.restore.remote(str(self.last_checkpoint))
        self.actors[index] = actor

    async def _poll(self, progress: ProgressFn | None) -> None:
        """Per-shard progress and health while a step runs (errors: the step handles them)."""
        while True:
            await asyncio.sleep(_POLL_S)
            for index, actor in enumerate(list(self.actors)):
                try:
                    health = await asyncio.wait_for(actor.health.remote(), timeout=_POLL_S * 4)
                except (asyncio.TimeoutError, *_LOST):
                    continue
                health["time"] = time.time()
                self.health[index] = health
                if progress is not None:
                    progress(index, int(health["done"]))

    async def model_metrics(self) -> dict[str, Any]:
        """Per shard, since each actor has its own clients (and endpoints' view)."""
        return {f"shard={i}": s for i, s in sorted(self._model_layer.items()) if s}

    # --- checkpoints -----------------------------------------------------------------
    async def save(self, directory: Path) -> None:
        await asyncio.gather(*(actor.save.remote(str(directory)) for actor in self.actors))
        # the folder is renamed to step=<n> on commit; remember where it will be
        step = directory.name.removeprefix(".").removesuffix(".tmp")
        self.last_checkpoint = directory.parent / step

    async def restore(self, directory: Path) -> None:
        await asyncio.gather(*(actor.restore.remote(str(directory)) for actor in self.actors))
        self.last_checkpoint = directory

    async def nodes(self) -> list[str]:
        """The Ray node of every shard (for placement checks)."""
        healths = await asyncio.gather(*(actor.health.remote() for actor in self.actors))
        return [str(h["node"]) for h in healths]
