"""Environment interface: shared state that agents observe, with events and nesting.

An environment lives on the driver. Shards get a read-only copy of its
``snapshot()`` each step, observe it per agent, and reduce their agents'
decisions into a small ``partial``; the driver ``combine``s the partials of all
shards and ``apply``s the outcome, which fires the ``step_end`` event. That is
what keeps one remote call per shard per step possible (design brief, idea 2).

State that is large and keyed (a chat room's transcript, a social graph) does not
travel in the snapshot: it lives in a ``KeyedStore`` split by key into partitions
(in-process, or one Ray actor each). A shard reads only the keys its agents need
(``keys_for``), and stages the ``KeyedOp``s its agents' decisions produce
(``writes``); the runtime commits every shard's ops at the step boundary in a
seeded order, so the state after a step does not depend on how agents were sharded.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from megasim.agent import Agent
from megasim.env.events import ListenerTasks

Listener = Callable[[str, Mapping[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class DecisionBatch:
    """Columnar view of one shard's decisions in a step, for vectorised reductions."""

    agent_ids: npt.NDArray[np.int64]
    groups: npt.NDArray[np.int32]
    values: npt.NDArray[np.float64]  # NaN where invalid
    valid: npt.NDArray[np.bool_]


class KeyedOp(NamedTuple):
    """One change to keyed state. Ops of a step are applied in (order, seq) order.

    ``order`` places the op within its step: the agent id, or a seeded hash of (step,
    agent) when who-goes-first should be random but reproducible (chat posts).
    kinds: ``append`` (to the key's list, keeping the last ``keep`` items if > 0),
    ``add`` / ``discard`` (set membership, read back sorted), ``set`` (replace),
    ``delete``. Values are plain JSON data: keyed state is checkpointed as JSON.
    """

    key: str
    order: int
    seq: int
    kind: str
    value: Any
    keep: int = 0


class KeyedStore(Protocol):
    """Keyed shared state, partitioned by key; what a shard sees of it."""

    async def read(self, keys: Sequence[str]) -> dict[str, Any]:
        """Current values (as of the last commit) of those of ``keys`` that exist."""
        ...

    async def stage(self, step: int, shard: int, ops: Sequence[KeyedOp]) -> None:
        """Hold ``shard``'s ops of ``step`` until commit; staging again replaces them, so a
        rerun shard's ops are never applied twice."""
        ...

    async def commit(self, step: int) -> None:
        """Apply every shard's staged ops of ``step`` in (order, seq) order."""
        ...

    async def save(self, directory: Path) -> None:
        """Write the state into a checkpoint folder (JSON)."""
        ...

    async def restore(self, directory: Path) -> None:
        """Take the state of a checkpoint folder; staged ops are dropped."""
        ...


class PartitionClient(Protocol):
    """One partition as seen from a shard or the driver: in-process, or a Ray actor."""

    async def read(self, keys: list[str]) -> dict[str, Any]: ...
    async def stage(self, step: int, shard: int, ops: list[KeyedOp]) -> None: ...
    async def commit(self, step: int) -> int: ...
    async def save(self, directory: str) -> int: ...
    async def restore(self, directory: str) -> int: ...


class Environment:
    """Base environment: state dict, observe, per-step reduction, async events, children."""

    name: str = "environment"
    keyed: bool = False  # True: the runtime gives shards a KeyedStore (see module doc)

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.state: dict[str, Any] = {}
        self.children: dict[str, Environment] = {}
        self.parent: Environment | None = None
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._tasks: ListenerTasks | None = None  # the root's: see env/events.py

    # --- nesting -----------------------------------------------------------------
    def add_child(self, child: Environment) -> Environment:
        """Nest ``child``; its events bubble up to this environment's listeners too."""
        if child.name in self.children:
            raise ValueError(f"environment {self.name!r} already has a child {child.name!r}")
        child.parent = self
        self.children[child.name] = child
        return child

    def child(self, path: str) -> Environment:
        """Find a nested environment by a dotted path such as ``"city.market"``."""
        env: Environment = self
        for part in path.split("."):
            env = env.children[part]
        return env

    # --- events --------------------------------------------------------------------
    def on(self, event: str, listener: Listener) -> None:
        """Call ``listener(event, payload)`` whenever ``event`` fires here or in a child."""
        self._listeners[event].append(listener)

    @property
    def root(self) -> Environment:
        env = self
        while env.parent is not None:
            env = env.parent
        return env

    @property
    def listener_tasks(self) -> ListenerTasks:
        """The background listener tasks of this environment's whole tree."""
        root = self.root
        if root._tasks is None:
            root._tasks = ListenerTasks()
        return root._tasks

    def fire(self, event: str, payload: Mapping[str, Any]) -> bool:
        """Announce ``event`` without waiting for its listeners (they run in the
        background, see env/events.py); False, and nothing scheduled, if nobody listens."""
        return self.listener_tasks.fire(self, event, payload)

    async def drain(self) -> None:
        """Wait for every listener fired so far anywhere in this environment's tree."""
        await self.listener_tasks.drain()

    async def emit(self, event: str, payload: Mapping[str, Any]) -> None:
        """Run this environment's listeners concurrently, then bubble to the parent. A
        failing listener neither stops the others nor the bubbling; its error is raised
        once all have run (several: an ExceptionGroup)."""
        listeners = self._listeners.get(event, []) + self._listeners.get("*", [])
        outcomes = await asyncio.gather(
            *(listener(event, payload) for listener in listeners), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if self.parent is not None:
            try:
                await self.parent.emit(event, payload)
            except Exception as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup(f"{len(errors)} listeners of {event!r} failed", errors)

    # --- the step protocol -----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain-data copy of the state that shards need to observe (and checkpoints store)."""
        return {
            "state": dict(self.state),
            "children": {name: c.snapshot() for name, c in self.children.items()},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self.state = dict(snapshot["state"])
        for name, child_snapshot in snapshot.get("children", {}).items():
            self.children[name].restore(child_snapshot)

    def prepare(self) -> None:
        """Shard side, once per step after ``restore``: precompute what ``observe`` hands out."""

    def keys_for(self, agents: Sequence[Agent]) -> list[str]:
        """Shard side, keyed environments: the keys ``agents`` observe this step."""
        return []

    def load_keyed(self, values: Mapping[str, Any]) -> None:
        """Shard side, before ``prepare``: the values of ``keys_for`` read from the store."""

    def keys_after(self) -> list[str]:
        """Shard side, keyed environments: more keys that depend on the values just loaded
        (a feed needs the followees read first); asked again until it returns none."""
        return []

    def acting(self, step: int, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_] | None:
        """Shard side: which of ``ids`` may act in ``step`` (a removed account may not), on
        top of the run's sparse activation; None: all of them."""
        return None

    def writes(self, step: int, decisions: pa.Table) -> list[KeyedOp]:
        """Shard side, keyed environments: the ops a shard's decisions (rows of
        DECISION_SCHEMA) make to keyed state."""
        return []

    def observe(self, agent: Agent) -> Any:
        """What ``agent`` sees this step; default: the whole state."""
        return self.state

    def answer_range(self) -> tuple[float, float] | None:
        """The range of valid answers, for the per-step histogram of metrics.jsonl; by
        default the state's ``low``/``high`` (None: no histogram)."""
        low, high = self.state.get("low"), self.state.get("high")
        if isinstance(low, int | float) and isinstance(high, int | float) and low < high:
            return float(low), float(high)
        return None

    def reduce(self, batch: DecisionBatch) -> dict[str, Any]:
        """Shard side: summarise a shard's decisions into a small, combinable partial."""
        return {"n": int(batch.agent_ids.size), "valid": int(batch.valid.sum())}

    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Driver side: merge the partials of all shards into this step's outcome."""
        return {
            "n": sum(int(p["n"]) for p in partials),
            "valid": sum(int(p["valid"]) for p in partials),
        }

    async def apply(self, step: int, outcome: Mapping[str, Any]) -> None:
        """Fold the outcome into the state and announce it (``step_end``, fired: a slow
        listener never holds up the next step)."""
        self.state["step"] = step
        self.fire("step_end", {"step": step, "env": self.name, **outcome})
