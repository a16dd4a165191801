"""AgentShard: thousands to a million agents in one process, stepped as coroutines.

Agents whose model needs no Task context (``model.immediate`` or ``model.task_free``:
scripted, surrogate, with or without emulated latency) are driven by TaskFreeDriver:
their ``act`` coroutine runs inline until it completes or suspends, and a suspended one
is resumed from its future's callback. Agents of real network models get an asyncio
task each, so libraries that need a current task (httpx, anyio) work. A million
agents therefore cost a plain loop, not a million tasks (gather over 1M tasks costs
10-12 s on two cores).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from megasim.activity import ActivityPlan
from megasim.agent import Agent, Decision
from megasim.env.base import DecisionBatch, Environment, KeyedStore
from megasim.message import Message
from megasim.runtime.answers import summarize_answers
from megasim.runtime.base import LATENCY_EDGES_MS, ModelStepStats, ProgressFn, ShardStepResult
from megasim.runtime.checkpoint import write_agent_states
from megasim.runtime.driver import TaskFreeDriver
from megasim.runtime.mailbox import Mailbox
from megasim.store.run_dir import RunDirectory
from megasim.store.schema import DECISION_SCHEMA

_PROGRESS_EVERY_S = 0.2


def failed_decision(exc: BaseException) -> Decision:
    return Decision(value=None, valid=False, error=f"agent raised {type(exc).__name__}: {exc}")


def _task_done(record: Callable[[int, Any], None], index: int, task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        record(index, asyncio.CancelledError("the agent's task was cancelled"))
    else:
        record(index, task.exception() or task.result())


class AgentShard:
    """Holds agents and one replica of the environment; one ``step`` call per step."""

    def __init__(
        self,
        index: int,
        agents: Sequence[Agent],
        env: Environment,
        run_dir: RunDirectory,
        store: KeyedStore | None = None,
        activity: ActivityPlan | None = None,
    ) -> None:
        self.index = index
        self.agents = list(agents)
        self.env = env
        self.run_dir = run_dir
        self.store = store  # keyed shared state, for environments that have it
        self._id_array: npt.NDArray[np.int64] | None = None
        # sparse activation (config.activity); None: all act. Its mask is positional, so
        # it follows the agents' order even if the scenario built them in another one.
        self.activity = activity.aligned_to(self._ids()) if activity is not None else None
        self._acting: list[Agent] = []
        self.mailbox = Mailbox()
        for agent in self.agents:
            agent.mailbox = self.mailbox

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
        self,
        step: int,
        env_snapshot: Mapping[str, Any],
        progress: ProgressFn | None = None,
        inbox: Sequence[Message] = (),
    ) -> ShardStepResult:
        started = time.perf_counter()
        self.env.restore(env_snapshot)
        acting = self.acting(step)
        if self.store is not None:  # only the keys this shard's active agents observe
            self.env.load_keyed(await self.store.read(self.env.keys_for(acting)))
            while keys := self.env.keys_after():  # keys that depend on those read
                self.env.load_keyed(await self.store.read(keys))
        self.env.prepare()
        self.mailbox.step = step
        self.mailbox.deliver(inbox)
        decisions, tasks = await self._run_agents(acting, progress)
        if acting is not self.agents:  # direct messages wait for their receiver to act
            self.mailbox.hold_unread({a.id for a in acting})
        columns = self._columns(step, acting, decisions)
        table = pa.Table.from_pydict(columns, schema=DECISION_SCHEMA)
        prompts = distinct_prompts(decisions)
        del decisions  # the table holds everything from here on
        self.run_dir.write_decisions(step, self.index, table)
        if prompts:
            self.run_dir.write_prompts(step, self.index, prompts)
        if self.store is not None:  # committed by the runtime once every shard is done
            await self.store.stage(step, self.index, self.env.writes(step, table))
        return ShardStepResult(
            shard=self.index,
            step=step,
            agents=len(self.agents),
            active=len(acting),
            partial=self.env.reduce(decision_batch(table)),
            models=model_stats(table),
            wall_s=time.perf_counter() - started,
            tasks=tasks,
            messages=self.mailbox.collect(),
            answers=summarize_answers(table, self.env.answer_range()),
        )

    def acting(self, step: int) -> Sequence[Agent]:
        """The agents that act in ``step``: the activity plan's mask (sparse activation),
        minus those the environment holds back (``env.acting(step, ids)``, e.g. removed
        accounts). Inactive agents make no model call and get no decision row."""
        plan = self.activity
        mask = plan.mask(step) if plan is not None else None
        ids = plan.agent_ids if plan is not None else self._ids()
        allowed = self.env.acting(step, ids)
        if allowed is not None:
            mask = allowed if mask is None else mask & allowed
        if mask is None:
            return self.agents
        agents = self.agents
        # kept until the next step's list exists: environments may cache keys_for results
        # by id(list), and a freed list's id could be reused by the next one
        self._acting = [agents[i] for i in np.flatnonzero(mask).tolist()]
        return self._acting

    def _ids(self) -> npt.NDArray[np.int64]:
        ids = self._id_array
        if ids is None or ids.size != len(self.agents):
            ids = np.fromiter((a.id for a in self.agents), np.int64, len(self.agents))
            self._id_array = ids
        return ids

    async def _run_agents(
        self, agents: Sequence[Agent], progress: ProgressFn | None
    ) -> tuple[list[Decision], int]:
        # The loop allocates millions of short-lived acyclic objects; letting the cyclic
        # collector run during it re-scans every live agent each time (measured: ~30%).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return await self._run_agents_unmanaged(agents, progress)
        finally:
            if gc_was_enabled:
                gc.enable()

    async def _run_agents_unmanaged(
        self, agents: Sequence[Agent], progress: ProgressFn | None
    ) -> tuple[list[Decision], int]:
        observe = self.env.observe
        decisions: list[Decision | None] = [None] * len(agents)
        tasks: list[tuple[int, asyncio.Future[Decision]]] = []
        done = [0]
        last_report = [time.perf_counter()]

        def report(force: bool = False) -> None:
            now = time.perf_counter()
            if progress is not None and (force or now - last_report[0] > _PROGRESS_EVERY_S):
                progress(self.index, done[0])
                last_report[0] = now

        def record(index: int, outcome: Any) -> None:
            decisions[index] = (
                outcome
                if isinstance(outcome, Decision)
                else failed_decision(
                    outcome if isinstance(outcome, BaseException) else TypeError(repr(outcome))
                )
            )
            done[0] += 1
            report()  # throttled by time: a slow step of 100 LLM agents still reports

        driver: TaskFreeDriver[Decision] = TaskFreeDriver(record)
        task_free: dict[int, bool] = {}  # per model object, looked up once
        inline = 0  # agents finished on the first send, counted here, not via record()
        for i, agent in enumerate(agents):
            model = agent.model
            free = task_free.get(id(model))
            if free is None:
                free = task_free[id(model)] = bool(
                    model.immediate or getattr(model, "task_free", False)
                )
            try:
                coro = agent.act(observe(agent))
            except Exception as exc:  # observe failed
                record(i, exc)
                continue
            if not free:
                task = asyncio.ensure_future(coro)
                task.add_done_callback(partial(_task_done, record, i))
                tasks.append((i, task))
                continue
            try:  # the common case at scale: the coroutine finishes on its first send
                yielded = coro.send(None)
            except StopIteration as stop:
                if not isinstance(stop.value, Decision):
                    record(i, TypeError(f"act() returned {stop.value!r}, not a Decision"))
                    continue
                decisions[i] = stop.value
                inline += 1
                if (inline & 4095) == 0:
                    done[0] += 4096
                    report()
                continue
            except (Exception, asyncio.CancelledError) as exc:
                record(i, exc)
                continue
            driver.resume_from(i, coro, yielded)
        done[0] += inline & 4095
        report(force=True)
        if tasks:
            await asyncio.wait([t for _, t in tasks])
        await driver.wait()
        report(force=True)
        lost = failed_decision(RuntimeError("lost"))
        return [d if d is not None else lost for d in decisions], len(tasks)

    def _columns(
        self, step: int, agents: Sequence[Agent], decisions: Sequence[Decision]
    ) -> dict[str, list[Any]]:
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
            "text": [d.text for d in decisions],
        }


def distinct_prompts(decisions: Sequence[Decision]) -> dict[str, tuple[Any, ...]]:
    """prompt id -> the messages sent, once per id (a million P1 agents share a handful)."""
    found: dict[str, tuple[Any, ...]] = {}
    for d in decisions:
        if d.prompt is not None and d.prompt_id not in found:
            found[d.prompt_id] = d.prompt
    return found


def decision_batch(table: pa.Table) -> DecisionBatch:
    """The columns environments reduce over, as numpy arrays (NaN where invalid)."""
    valid = table.column("valid").to_numpy(zero_copy_only=False).astype(np.bool_)
    values = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    values[~valid] = math.nan
    return DecisionBatch(
        agent_ids=table.column("agent_id").to_numpy().astype(np.int64),
        groups=table.column("group").to_numpy().astype(np.int32),
        values=values,
        valid=valid & ~np.isnan(values),
    )


def model_stats(table: pa.Table) -> dict[str, ModelStepStats]:
    """Per-model calls, tokens, failures and latency histogram, computed column-wise."""
    no_answer = pc.is_null(table.column("raw_text"))
    invalid = pc.invert(table.column("valid"))
    table = table.append_column("failed", pc.and_(no_answer, invalid))
    table = table.append_column("unparsed", pc.and_(pc.invert(no_answer), invalid))
    stats: dict[str, ModelStepStats] = {}
    models = table.column("model")
    for name in pc.unique(models).to_pylist():
        part = table.filter(pc.equal(models, name))
        latency = part.column("latency_ms").to_numpy(zero_copy_only=False)
        hist = np.bincount(
            np.searchsorted(LATENCY_EDGES_MS, latency), minlength=len(LATENCY_EDGES_MS) + 1
        )
        stats[str(name)] = ModelStepStats(
            calls=part.num_rows,
            errors=int(pc.sum(part.column("failed")).as_py() or 0),
            invalid=int(pc.sum(part.column("unparsed")).as_py() or 0),
            tokens_in=int(pc.sum(part.column("tokens_in")).as_py() or 0),
            tokens_out=int(pc.sum(part.column("tokens_out")).as_py() or 0),
            latency_hist=hist.tolist(),
        )
    return stats
