"""Runtime interface: where shards live (this process, or Ray actors) and how a step runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from megasim.message import Message

# Latency histogram: log-spaced edges from 0.1 ms to ~28 h; combinable across shards.
LATENCY_EDGES_MS: npt.NDArray[np.float64] = np.logspace(-1, 8, 91)

ProgressFn = Callable[[int, int], None]  # (shard index, decisions done so far in this step)


@dataclass(slots=True)
class ModelStepStats:
    """Per-model accounting of one shard's step; summed across shards by the driver."""

    calls: int = 0
    errors: int = 0
    invalid: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_hist: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES_MS) + 1))

    def merge(self, other: ModelStepStats) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.invalid += other.invalid
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        pairs = zip(self.latency_hist, other.latency_hist, strict=True)
        self.latency_hist = [a + b for a, b in pairs]

    def latency_quantile_ms(self, q: float) -> float | None:
        """Upper edge of the bin holding quantile ``q`` (an over-estimate by at most 26%)."""
        total = sum(self.latency_hist)
        if total == 0:
            return None
        cumulative = np.cumsum(self.latency_hist)
        index = int(np.searchsorted(cumulative, q * total))
        return float(LATENCY_EDGES_MS[min(index, len(LATENCY_EDGES_MS) - 1)])


@dataclass(slots=True)
class ShardStepResult:
    """What one shard returns for one step: reductions only, never per-agent rows."""

    shard: int
    step: int
    agents: int
    partial: dict[str, Any]
    models: dict[str, ModelStepStats]
    wall_s: float
    tasks: int  # agents that awaited I/O and needed a task
    node: str | None = None  # the Ray node that ran the shard (None in the local runtime)
    messages: list[Message] = field(default_factory=list)  # sent this step, for routing
    model_layer: dict[str, Any] = field(default_factory=dict)  # actor's model counters (Ray)
    answers: dict[str, Any] = field(default_factory=dict)  # histogram and per-key sums
    active: int | None = None  # agents that acted (sparse activation); None: all of them


def model_layer_metrics(models: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics_snapshot()`` of every client that has one (wrappers chain their inner's)."""
    found: dict[str, Any] = {}
    for name, model in models.items():
        snapshot = getattr(model, "metrics_snapshot", None)
        if callable(snapshot):
            found[name] = snapshot()
    return found


class Runtime(Protocol):
    """Runs shards. ``LocalRuntime`` in-process; ``RayRuntime`` (issue 4) in Ray actors."""

    async def start(self) -> None: ...

    async def step(
        self,
        step: int,
        env_snapshot: Mapping[str, Any],
        progress: ProgressFn | None = None,
        inboxes: Mapping[int, list[Message]] | None = None,
    ) -> list[ShardStepResult]: ...

    def route(self, messages: Sequence[Message]) -> dict[int, list[Message]]:
        """Sort messages by the shard holding their receiver (broadcasts: every shard)."""
        ...

    async def model_metrics(self) -> dict[str, Any]:
        """Model-layer counters (merges, cache hits, endpoints) by model name, if any."""
        ...

    async def save(self, directory: Path) -> None:
        """Every shard writes its agents' state into a checkpoint folder."""
        ...

    async def restore(self, directory: Path) -> None:
        """Every shard takes its agents' state from a checkpoint folder."""
        ...

    async def close(self) -> None: ...
