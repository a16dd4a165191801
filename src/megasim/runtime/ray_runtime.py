"""RayRuntime: the same AgentShard, hosted in Ray async actors over a cluster.

One actor per shard (thousands to a million agents each), one remote call per shard
per step. Actors build their own model clients and agents from the config and their
slice of the population, and write their decisions to the shared run directory; only
reductions travel back. A shard whose actor dies mid-step, or whose node is declared
dead, is rebuilt from the last checkpoint (unpinned, on another node, if no alive node
offers its pinned resources any more) and the step is rerun on it alone: its step file
is replaced atomically, so no decision is lost or counted twice. Keyed environment
state lives in partition actors (runtime/ray_store.py); if one dies, every partition and
every shard goes back to the last checkpoint and the step is rerun on all shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

from megasim.config import SimulationConfig
from megasim.env.keyed_store import PartitionedStore
from megasim.message import Message
from megasim.plugins import load_scenario_class
from megasim.runtime import ray_auth
from megasim.runtime.base import ProgressFn, ShardStepResult
from megasim.runtime.local import shard_slices
from megasim.runtime.mailbox import router_for
from megasim.runtime.ray_shard import RemoteShard
from megasim.runtime.ray_store import actor_store, lost_partitions, spawn_partitions
from megasim.store.run_dir import RunDirectory

_POLL_S = 0.25
Alive = dict[str, dict[str, float]]  # node id -> total resources, alive nodes only


class NodeGoneError(Exception):
    """The node a call waits on is dead in Ray's node table (or a pin can't be met any more).

    Raised by the driver itself: Ray may take long to fail calls to a hung node."""


_LOST = (RayActorError, ActorDiedError, ActorUnavailableError, NodeGoneError)


def offers(alive: Alive, pin: Mapping[str, float]) -> bool:
    """Whether some alive node has (in total) every resource of ``pin``."""
    return any(all(res.get(k, 0.0) >= v for k, v in pin.items()) for res in alive.values())


class RayRuntime:
    """Shards as Ray actors; the driver code (Simulation, scenario) is unchanged."""

    def __init__(self, config: SimulationConfig, population: pa.Table, run_dir: RunDirectory):
        self.config = config
        self.population = population
        self._population_ref: Any = None  # the population in Ray's object store
        # absolute: actors on other nodes (other working directories) write there too
        self.run_dir = RunDirectory(run_dir.path.absolute())
        self.actors: list[Any] = []
        self.nodes_of: list[str] = []  # each shard's Ray node, for liveness checks
        self.slices: list[tuple[int, int]] = []
        self.last_checkpoint: Path | None = None
        self.health: dict[int, dict[str, Any]] = {}
        self._model_layer: dict[int, dict[str, Any]] = {}  # from each shard's last result
        self._started_ray = False
        self._auth_saved: ray_auth.Saved = {}  # environment before token auth was turned on
        self._alive: tuple[float, Alive] = (0.0, {})
        self.partitions: list[Any] = []  # keyed-state partition actors, if the env has any
        self._partition_state: dict[int, str] = {}  # "lost" / "restored", for monitors
        self.store: PartitionedStore | None = None

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if not ray.is_initialized():
            address = self.config.runtime.address
            if address is None:  # megasim starts this Ray: nobody else may run code on it
                self._auth_saved = ray_auth.enable_for_local_ray()
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            except BaseException:
                ray_auth.restore(self._auth_saved)
                self._auth_saved = {}
                raise
            self._started_ray = True
        shards = min(self.config.runtime.shards, max(1, self.population.num_rows))
        self.slices = shard_slices(self.population.num_rows, shards)
        if load_scenario_class(self.config.scenario).keyed_state:  # partition actors needed
            self._spawn_partitions()
        pins = self.config.runtime.shard_resources
        self.actors = [self._spawn(index, pins.get(index)) for index in range(shards)]
        self.router = router_for(self.population, self.slices)
        # wait until every actor is built (model servers loaded, agents created)
        healths = await asyncio.gather(*(actor.health.remote() for actor in self.actors))
        self.nodes_of = [str(h["node"]) for h in healths]

    def _spawn(self, index: int, pin: Mapping[str, float] | None) -> Any:
        runtime = self.config.runtime
        offset, length = self.slices[index]
        options: dict[str, Any] = {
            "num_cpus": runtime.cpus_per_shard,
            "name": None,
            "max_restarts": 0,  # the driver rebuilds lost shards from checkpoints itself
        }
        if pin is not None:
            options["resources"] = dict(pin)
        elif runtime.placement == "spread":
            options["scheduling_strategy"] = "SPREAD"
        if self._population_ref is None:  # put once; every actor reads the same object
            self._population_ref = ray.put(self.population)
        return RemoteShard.options(**options).remote(
            self.config.model_dump(mode="json"),
            self._population_ref,
            index,
            str(self.run_dir.path),
            self.partitions,
            (offset, length),
        )

    def _spawn_partitions(self) -> None:
        runtime = self.config.runtime
        self.partitions = spawn_partitions(runtime.env_partitions, runtime.placement == "spread")
        self.store = actor_store(self.partitions)

    async def close(self) -> None:
        """Release every actor, also after a failed ``start`` (nodes then partly unknown).
        Without a Ray connection there is nothing to release (and ``ray.kill`` would start
        or join a Ray instance just to fail)."""
        if not ray.is_initialized():
            self.actors.clear()
            self.partitions.clear()
            return
        try:
            for index, actor in enumerate(self.actors):
                if index < len(self.nodes_of):
                    with contextlib.suppress(*_LOST):
                        await self._until(actor.close.remote(), self._node_gone(index))
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(actor)
        finally:
            for partition in self.partitions:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(partition)
            self.actors.clear()
            self.partitions.clear()
            if self._started_ray:
                ray.shutdown()
                self._started_ray = False
                ray_auth.restore(self._auth_saved)
                self._auth_saved = {}

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
        budget = self.config.runtime.max_shard_restarts
        poller = asyncio.create_task(self._poll(progress))
        try:
            for attempt in range(budget + 1):
                try:
                    return await self._attempt(step, snapshot, inboxes)
                except Exception:
                    lost = await lost_partitions(self.partitions)
                    if not lost or attempt == budget:
                        raise
                    await self._recover_partitions(step, lost)
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            poller.cancel()

    async def _attempt(
        self, step: int, snapshot: dict[str, Any], inboxes: Mapping[int, list[Message]]
    ) -> list[ShardStepResult]:
        """Every shard steps (lost ones rebuilt and rerun), then keyed ops are committed.
        All shards settle before a failure is raised: a rerun of the step must never
        overlap a shard's still-running first attempt."""
        settled = await asyncio.gather(
            *(
                self._step_shard(index, step, snapshot, inboxes.get(index, []))
                for index in range(len(self.actors))
            ),
            return_exceptions=True,
        )
        for outcome in settled:
            if isinstance(outcome, BaseException):
                raise outcome
        if self.store is not None:
            await self.store.commit(step)
        return [r for r in settled if isinstance(r, ShardStepResult)]

    async def _step_shard(
        self, index: int, step: int, snapshot: dict[str, Any], inbox: list[Message]
    ) -> ShardStepResult:
        restarts = 0
        while True:
            try:
                if restarts:  # inside the try: a rebuild that fails is one more loss
                    await self._rebuild(index, step)
                    node = self.nodes_of[index]
                    self.run_dir.append_event("shard_restarted", shard=index, step=step, node=node)
                    self.health[index] = {**self.health.get(index, {}), "state": "restarted"}
                ref = self.actors[index].step.remote(step, snapshot, inbox)
                result: ShardStepResult = await self._until(ref, self._node_gone(index))
                self._model_layer[index] = result.model_layer
                return result
            except _LOST as exc:
                if (
                    isinstance(exc, RayTaskError)
                    or restarts >= self.config.runtime.max_shard_restarts
                ):
                    raise  # RayTaskError: the shard is alive, a call it made failed
                restarts += 1
                node = self.nodes_of[index]
                reason = type(exc).__name__
                self.run_dir.append_event(
                    "shard_lost", shard=index, step=step, node=node, reason=reason
                )
                self.health[index] = {**self.health.get(index, {}), "state": "lost"}

    async def _rebuild(self, index: int, step: int) -> None:
        """A fresh actor for shard ``index`` with the agent state of the last checkpoint.

        A pin that no alive node offers any more (its node died) is dropped, else the
        actor would stay pending forever. Ray often declares the node dead only while the
        pinned replacement waits for it: that failure is a move, not one more loss."""
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actors[index])
        pin = self.config.runtime.shard_resources.get(index)
        while True:
            if pin is not None and not offers(self._alive_nodes(), pin):
                self.run_dir.append_event(
                    "shard_moved",
                    shard=index,
                    step=step,
                    old_node=self.nodes_of[index],
                    reason=f"no alive node offers {dict(pin)}",
                )
                pin = None
            actor = self._spawn(index, pin)
            unmet = self._pin_unmet(pin)
            try:
                health = await self._until(actor.health.remote(), unmet)
                break
            except _LOST:
                ray.kill(actor)
                if not unmet(self._alive_nodes(max_age=0.0)):
                    raise
        self.actors[index] = actor
        self.nodes_of[index] = str(health["node"])
        if self.last_checkpoint is not None:
            restore = actor.restore.remote(str(self.last_checkpoint))
            await self._until(restore, self._node_gone(index))

    # --- keyed-state partitions ---------------------------------------------------------
    async def _recover_partitions(self, step: int, lost: list[int]) -> None:
        """New partition actors, and every partition and shard back at the last checkpoint
        (shards may have changed agent state in the failed attempt): the step reruns whole."""
        self.run_dir.append_event("env_partition_lost", step=step, partitions=lost)
        self._partition_state.update(dict.fromkeys(lost, "restored"))
        for partition in self.partitions:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(partition)
        self._spawn_partitions()
        assert self.store is not None  # set by _spawn_partitions
        # no checkpoint yet (step 1): an absent folder restores the initial (empty) state
        checkpoint = self.last_checkpoint or self.run_dir.path / "checkpoints" / "none"
        await self.store.restore(checkpoint)
        await asyncio.gather(
            *(a.use_partitions.remote(self.partitions) for a in self.actors),
            *(a.restore.remote(str(checkpoint)) for a in self.actors),
        )
        self.run_dir.append_event("env_partitions_restored", step=step, partitions=lost)

    # --- node liveness ---------------------------------------------------------------
    def _alive_nodes(self, max_age: float = _POLL_S) -> Alive:
        """Alive nodes from Ray's node table (GCS health checks), cached for a poll period."""
        fetched, alive = self._alive
        if time.monotonic() - fetched >= max_age:
            nodes = ray.nodes()  # type: ignore[no-untyped-call]
            alive = {str(n["NodeID"]): dict(n["Resources"]) for n in nodes if n["Alive"]}
            self._alive = (time.monotonic(), alive)
        return alive

    def _node_gone(self, index: int) -> Callable[[Alive], bool]:
        node = self.nodes_of[index]
        return lambda alive: node not in alive

    @staticmethod
    def _pin_unmet(pin: Mapping[str, float] | None) -> Callable[[Alive], bool]:
        return lambda alive: pin is not None and not offers(alive, pin)

    async def _until(self, ref: Any, gone: Callable[[Alive], bool]) -> Any:
        """``ref``'s value, or NodeGoneError once ``gone(alive nodes)``: a call to an actor on a
        dead node (or one never placed) must not wait on Ray's own detection forever."""
        task: asyncio.Future[Any] = asyncio.ensure_future(ref)
        while True:
            done, _ = await asyncio.wait({task}, timeout=_POLL_S)
            if done:
                return task.result()
            if gone(self._alive_nodes()):
                task.cancel()
                raise NodeGoneError

    async def _poll(self, progress: ProgressFn | None) -> None:
        """Per-shard progress and health while a step runs (errors: the step handles them)."""
        while True:
            await asyncio.sleep(_POLL_S)
            for index, actor in enumerate(list(self.actors)):
                try:
                    health = await asyncio.wait_for(actor.health.remote(), timeout=_POLL_S * 4)
                except (TimeoutError, *_LOST):
                    continue
                health["time"] = time.time()
                previous = self.health.get(index, {}).get("state")
                health["state"] = "restarted" if previous in ("restarted", "lost") else "ok"
                self.health[index] = health
                if progress is not None:
                    progress(index, int(health["done"]))

    def shard_health(self) -> list[dict[str, Any]]:
        """The last health report of every shard (polled while steps run), for monitors."""
        return [
            dict(self.health.get(index) or {"shard": index, "state": "starting"})
            for index in range(len(self.actors))
        ]

    def partition_health(self) -> list[dict[str, Any]]:
        """Keyed-state partition actors and whether they were lost in this run."""
        return [
            {"partition": index, "state": self._partition_state.get(index, "ok")}
            for index in range(len(self.partitions))
        ]

    async def restart_shard(self, index: int) -> None:
        """Kill shard ``index``'s actor on request: the step in flight (or the next one)
        finds it lost and rebuilds it from the last checkpoint, as after a crash."""
        if not 0 <= index < len(self.actors):
            raise ValueError(f"no shard {index}: this run has {len(self.actors)}")
        self.health[index] = {**self.health.get(index, {}), "shard": index, "state": "restarting"}
        ray.kill(self.actors[index], no_restart=True)

    async def model_metrics(self) -> dict[str, Any]:
        """Per shard, since each actor has its own clients (and endpoints' view)."""
        return {f"shard={i}": s for i, s in sorted(self._model_layer.items()) if s}

    # --- checkpoints -----------------------------------------------------------------
    async def save(self, directory: Path) -> None:
        directory = directory.absolute()  # as every node must see it
        await asyncio.gather(*(actor.save.remote(str(directory)) for actor in self.actors))
        if self.store is not None:
            await self.store.save(directory)
        # the folder is renamed to step=<n> on commit; remember where it will be
        step = directory.name.removeprefix(".").removesuffix(".tmp")
        self.last_checkpoint = directory.parent / step

    async def restore(self, directory: Path) -> None:
        directory = directory.absolute()  # as every node must see it
        await asyncio.gather(*(actor.restore.remote(str(directory)) for actor in self.actors))
        if self.store is not None:
            await self.store.restore(directory)
        self.last_checkpoint = directory

    async def nodes(self) -> list[str]:
        """The Ray node of every shard (for placement checks)."""
        healths = await asyncio.gather(*(actor.health.remote() for actor in self.actors))
        return [str(h["node"]) for h in healths]
