"""AgentShard: thousands to a million agents in one process, stepped as coroutines.

Agents whose model answers without I/O (``model.immediate``: scripted, surrogate
without latency) have their ``act`` coroutine driven inline; it only becomes a
task if it unexpectedly suspends. Agents of real models get an asyncio task
each, so libraries that need a current task (httpx, anyio) work. A million
immediate agents therefore cost a plain loop, not a million tasks (gather over
1M tasks costs 10-12 s on two cores).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from megasim.agent import Agent, Decision
from megasim.env.base import DecisionBatch, Environment
from megasim.runtime.base import LATENCY_EDGES_MS, ModelStepStats, ProgressFn, ShardStepResult
from megasim.runtime.checkpoint import write_agent_states
from megasim.store.run_dir import RunDirectory

_PROGRESS_EVERY_S = 0.2


def failed_decision(exc: BaseException) -> Decision:
    return Decision(value=None, valid=False, error=f"agent raised {type(exc).__name__}: {exc}")


async def _finish(coro: Coroutine[Any, Any, Decision], yielded: Any) -> Decision:
    """Resume a coroutine that suspended on ``yielded`` until it returns, as a Task would."""
    while True:
        if getattr(yielded, "_asyncio_future_blocking", None):
            yielded._asyncio_future_blocking = False  # what Task.__step does before waiting
        if yielded is None:
            await asyncio.sleep(0)
        else:
            try:
                await yielded
            except asyncio.CancelledError:
                if not yielded.cancelled():  # we were cancelled, not the awaited future
                    coro.close()
                    raise
            except Exception:
                pass
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            result: Decision = stop.value
            return result


class AgentShard:
    """Holds agents and one replica of the environment; one ``step`` call per step."""

    def __init__(
        self, index: int, agents: Sequence[Agent], env: Environment, run_dir: RunDirectory
    ) -> None:
        self.index = index
        self.agents = list(agents)
        self.env = env
        self.run_dir = run_dir

    def save_states(self, directory: Path) -> int:
        """Write the state of every agent that has one into a checkpoint folder."""
        states = ((a.id, a.state) for a in self.agents if a.state is not None)
        return write_agent_states(directory / f"shard={self.index}.jsonl", states)

    def load_states(self, states: Mapping[int, dict[str, Any]]) -> None:
        """Give each agent its checkpointed state (agents absent from ``states`` have none)."""
        for agent in self.agents:
            state = states.get(agent.id)
            agent.state = dict(state) if state is not None else None

    async def step(
        self, step: int, env_snapshot: Mapping[str, Any], progress: ProgressFn | None = None
    ) -> ShardStepResult:
        started = time.perf_counter()
        self.env.restore(env_snapshot)
        self.env.prepare()
        decisions, tasks = await self._run_agents(progress)
        self.run_dir.write_decisions(step, self.index, self._columns(step, decisions))
        batch = self._batch(decisions)
        return ShardStepResult(
            shard=self.index,
            step=step,
            agents=len(self.agents),
            partial=self.env.reduce(batch),
            models=self._model_stats(decisions),
            wall_s=time.perf_counter() - started,
            tasks=tasks,
        )

    async def _run_agents(self, progress: ProgressFn | None) -> tuple[list[Decision], int]:
        # The loop allocates millions of short-lived acyclic objects; letting the cyclic
        # collector run during it re-scans every live agent each time (measured: ~30%).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return await self._run_agents_unmanaged(progress)
        finally:
            if gc_was_enabled:
                gc.enable()

    async def _run_agents_unmanaged(
        self, progress: ProgressFn | None
    ) -> tuple[list[Decision], int]:
        observe = self.env.observe
        decisions: list[Decision | None] = [None] * len(self.agents)
        pending: list[tuple[int, asyncio.Future[Decision]]] = []
        done = 0
        last_report = time.perf_counter()
        for i, agent in enumerate(self.agents):
            if not agent.model.immediate:
                try:
                    pending.append((i, asyncio.ensure_future(agent.act(observe(agent)))))
                except Exception as exc:  # observe failed
                    decisions[i] = failed_decision(exc)
                    done += 1
                continue
            try:
                coro = agent.act(observe(agent))
                yielded = coro.send(None)
            except StopIteration as stop:
                decisions[i] = stop.value
                done += 1
                continue
            except Exception as exc:
                decisions[i] = failed_decision(exc)
                done += 1
                continue
            pending.append((i, asyncio.ensure_future(_finish(coro, yielded))))
            if progress is not None and (i & 4095) == 0:
                now = time.perf_counter()
                if now - last_report > _PROGRESS_EVERY_S:
                    progress(self.index, done)
                    last_report = now
        if progress is not None:
            progress(self.index, done)
        if pending:
            counter = [done]

            def _count(_: asyncio.Future[Decision]) -> None:
                counter[0] += 1
                if progress is not None:
                    progress(self.index, counter[0])

            for _, future in pending:
                future.add_done_callback(_count)
            outcomes = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
            for (i, _), outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    decisions[i] = failed_decision(outcome)
                else:
                    decisions[i] = outcome
        return [d if d is not None else failed_decision(RuntimeError("lost")) for d in decisions], (
            len(pending)
        )

    def _columns(self, step: int, decisions: Sequence[Decision]) -> dict[str, list[Any]]:
        agents = self.agents
        return {
            "step": [step] * len(agents),
            "agent_id": [a.id for a in agents],
            "shard": [self.index] * len(agents),
            "group": [a.group for a in agents],
            "model": [a.model.name for a in agents],
            "prompt_variant": [a.variant for a in agents],
            "prompt_id": [d.prompt_id for d in decisions],
            "raw_text": [d.raw_text for d in decisions],
            "value": [d.value if d.valid else None for d in decisions],
            "valid": [d.valid for d in decisions],
            "tokens_in": [d.tokens_in for d in decisions],
            "tokens_out": [d.tokens_out for d in decisions],
            "latency_ms": [d.latency_ms for d in decisions],
            "error": [d.error for d in decisions],
        }

    def _batch(self, decisions: Sequence[Decision]) -> DecisionBatch:
        n = len(decisions)
        values = np.fromiter(
            (d.value if d.valid and d.value is not None else math.nan for d in decisions),
            dtype=np.float64,
            count=n,
        )
        return DecisionBatch(
            agent_ids=np.fromiter((a.id for a in self.agents), dtype=np.int64, count=n),
            groups=np.fromiter((a.group for a in self.agents), dtype=np.int32, count=n),
            values=values,
            valid=~np.isnan(values),
        )

    def _model_stats(self, decisions: Sequence[Decision]) -> dict[str, ModelStepStats]:
        stats: dict[str, ModelStepStats] = {}
        latencies: dict[str, list[float]] = {}
        for agent, decision in zip(self.agents, decisions, strict=True):
            name = agent.model.name
            entry = stats.get(name)
            if entry is None:
                entry = stats[name] = ModelStepStats()
                latencies[name] = []
            entry.calls += 1
            entry.tokens_in += decision.tokens_in
            entry.tokens_out += decision.tokens_out
            if decision.error is not None and decision.raw_text is None:
                entry.errors += 1
            elif not decision.valid:
                entry.invalid += 1
            latencies[name].append(decision.latency_ms)
        for name, entry in stats.items():
            counts = np.bincount(
                np.searchsorted(LATENCY_EDGES_MS, np.asarray(latencies[name])),
                minlength=len(LATENCY_EDGES_MS) + 1,
            )
            entry.latency_hist = counts.tolist()
        return stats
