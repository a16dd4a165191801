"""The Simulation handle a scenario drives with plain async code: ``await sim.step()``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from megasim.config import SimulationConfig
from megasim.env.base import Environment
from megasim.message import Message
from megasim.runtime.answers import combine_answers
from megasim.runtime.base import ModelStepStats, ProgressFn, Runtime, ShardStepResult
from megasim.runtime.checkpoint import CheckpointStore
from megasim.store.run_dir import RunDirectory

StepListener = Callable[["StepOutcome"], Awaitable[None] | None]
StepGate = Callable[[int], Awaitable[None]]  # awaited before a step starts (pause, stop)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One finished step: the environment's combined outcome and the metrics line written."""

    step: int
    outcome: Mapping[str, Any]
    metrics: Mapping[str, Any]


def step_metrics(step: int, results: list[ShardStepResult], wall_s: float) -> dict[str, Any]:
    """The metrics.jsonl record of a step: counts, tokens, latency quantiles, per model."""
    per_model: dict[str, ModelStepStats] = {}
    for result in results:
        for name, stats in result.models.items():
            per_model.setdefault(name, ModelStepStats()).merge(stats)
    models = {
        name: {
            "calls": s.calls,
            "errors": s.errors,
            "invalid": s.invalid,
            "tokens_in": s.tokens_in,
            "tokens_out": s.tokens_out,
            "latency_p50_ms": s.latency_quantile_ms(0.5),
            "latency_p95_ms": s.latency_quantile_ms(0.95),
        }
        for name, s in sorted(per_model.items())
    }
    return {
        "step": step,
        "time": time.time(),
        "wall_s": round(wall_s, 4),
        "agents": sum(r.agents for r in results),
        "active": sum(r.agents if r.active is None else r.active for r in results),
        "tasks": sum(r.tasks for r in results),
        "decisions": sum(m["calls"] for m in models.values()),
        "errors": sum(m["errors"] for m in models.values()),
        "invalid": sum(m["invalid"] for m in models.values()),
        "tokens_in": sum(m["tokens_in"] for m in models.values()),
        "tokens_out": sum(m["tokens_out"] for m in models.values()),
        "models": models,
        "shards": [
            {"shard": r.shard, "agents": r.agents, "wall_s": r.wall_s, "node": r.node}
            for r in results
        ],
        "answers": combine_answers([r.answers for r in results]),
    }


class Simulation:
    """Driver-side handle: owns the environment, asks the runtime to step every shard."""

    def __init__(
        self,
        config: SimulationConfig,
        runtime: Runtime,
        env: Environment,
        run_dir: RunDirectory,
        progress: ProgressFn | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.env = env
        self.run_dir = run_dir
        self.progress = progress
        self.step_index = 0
        self.history: list[StepOutcome] = []
        self._listeners: list[StepListener] = []
        self._gates: list[StepGate] = []
        self.checkpoints = CheckpointStore(run_dir.path)
        self.in_flight: list[Message] = []  # sent last step, delivered with the next

    def resume_from(self, driver: Mapping[str, Any]) -> None:
        """Continue after a checkpointed step: environment state, step index and history."""
        self.env.restore(driver["env"])
        self.step_index = int(driver["step"])
        self.in_flight = [Message.from_dict(m) for m in driver.get("messages", [])]
        self.history = [
            StepOutcome(step=int(h["step"]), outcome=h["outcome"], metrics=h["metrics"])
            for h in driver["history"]
        ]

    def on_step(self, listener: StepListener) -> None:
        """Call ``listener(outcome)`` after each step (progress bars, live monitors)."""
        self._listeners.append(listener)

    def before_step(self, gate: StepGate) -> None:
        """Await ``gate(step)`` before each step starts: a step boundary, after the previous
        step's checkpoint, where a run can wait (pause) or end cleanly (stop)."""
        self._gates.append(gate)

    async def step_until(self, steps: int) -> None:
        """Step until ``steps`` are done, counting steps done before a resume."""
        while self.step_index < steps:
            await self.step()

    async def step(self) -> StepOutcome:
        """Run one step on every shard, combine, record metrics, update the environment."""
        step = self.step_index + 1
        for gate in self._gates:
            await gate(step)
        started = time.perf_counter()
        inboxes = self.runtime.route(self.in_flight)
        results = await self.runtime.step(step, self.env.snapshot(), self.progress, inboxes)
        self.in_flight = [m for r in results for m in r.messages]
        outcome = self.env.combine([r.partial for r in results])
        metrics = step_metrics(step, results, time.perf_counter() - started)
        metrics["messages"] = len(self.in_flight)
        layer = await self.runtime.model_metrics()
        if layer:
            metrics["model_layer"] = layer  # cumulative counters since the run started
        metrics["outcome"] = outcome
        self.run_dir.append_metrics(metrics)
        await self.env.apply(step, outcome)
        self.step_index = step
        result = StepOutcome(step=step, outcome=outcome, metrics=metrics)
        self.history.append(result)
        await self._checkpoint(step)
        for listener in self._listeners:
            maybe = listener(result)
            if maybe is not None:
                await maybe
        return result

    async def _checkpoint(self, step: int) -> None:
        """Atomically record everything needed to continue after ``step``."""
        tmp = self.checkpoints.begin(step)
        await self.runtime.save(tmp)
        driver = {
            "step": step,
            "env": self.env.snapshot(),
            "messages": [m.to_dict() for m in self.in_flight],
            "history": [
                {"step": h.step, "outcome": h.outcome, "metrics": h.metrics} for h in self.history
            ],
        }
        self.checkpoints.commit(step, tmp, driver)
