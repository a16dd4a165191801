"""AgentShard: inline stepping for immediate models, tasks for real I/O, nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow as pa

from megasim.agent import Agent, Decision, PersonaTable
from megasim.env.guess_game import GuessGame
from megasim.model.base import ChatRequest, ChatResponse
from megasim.model.scripted import ScriptedModel
from megasim.runtime.shard import AgentShard
from megasim.store.run_dir import RunDirectory


class SleepyModel:
    """Claims to be immediate but suspends: the shard must still finish the agent."""

    name = "sleepy"

    def __init__(self, immediate: bool) -> None:
        self.immediate = immediate

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return ChatResponse(text=str(request.agent_id), model=self.name)

    async def aclose(self) -> None:
        return None


class EchoAgent(Agent):
    """Answers its model's text as the value; agent 3 raises."""

    __slots__ = ()

    async def act(self, observation: Any) -> Decision:
        if self.id == 3:
            raise ValueError("boom")
        response = await self.model.complete(ChatRequest(messages=(), agent_id=self.id))
        return Decision(value=float(response.text), valid=True, raw_text=response.text)


def make_shard(tmp_path: Path, model: Any, n: int = 10) -> AgentShard:
    population = pa.table({"agent_id": list(range(n)), "group": [i % 2 for i in range(n)]})
    personas = PersonaTable(population)
    agents = [EchoAgent(i, i, personas, model, group=i % 2) for i in range(n)]
    env = GuessGame(group_sizes=[n - n // 2, n // 2], rounds=1)
    return AgentShard(0, agents, env, RunDirectory.create(tmp_path, "run"))


async def run_step(shard: AgentShard) -> tuple[Any, pa.Table]:
    progress: list[tuple[int, int]] = []
    result = await shard.step(1, shard.env.snapshot(), lambda s, d: progress.append((s, d)))
    assert progress, "progress was never reported"
    assert progress[-1][1] == len(shard.agents)
    return result, shard.run_dir.read_decisions(1)


async def test_immediate_model_creates_no_tasks(tmp_path: Path) -> None:
    model = ScriptedModel(responder=lambda r: str(r.agent_id))
    result, table = await run_step(make_shard(tmp_path, model))
    assert result.tasks == 0
    assert table.num_rows == 10
    assert table.column("value").to_pylist() == [float(i) if i != 3 else None for i in range(10)]
    assert "boom" in table.column("error").to_pylist()[3]
    assert result.partial["valid"] == [5, 4]  # agent 3 (group 1) failed


async def test_io_model_gets_tasks(tmp_path: Path) -> None:
    result, table = await run_step(make_shard(tmp_path, SleepyModel(immediate=False)))
    assert result.tasks == 10
    assert table.column("valid").to_pylist() == [i != 3 for i in range(10)]


async def test_unexpected_suspension_is_resumed(tmp_path: Path) -> None:
    """An 'immediate' model that awaits anyway is driven to completion, without tasks."""
    result, table = await run_step(make_shard(tmp_path, SleepyModel(immediate=True)))
    assert result.tasks == 0
    assert table.column("value").to_pylist() == [float(i) if i != 3 else None for i in range(10)]


async def test_model_stats_count_calls_and_latency(tmp_path: Path) -> None:
    result, _ = await run_step(make_shard(tmp_path, SleepyModel(immediate=False)))
    stats = result.models["sleepy"]
    assert stats.calls == 10
    assert stats.latency_quantile_ms(0.5) is not None


class WrongAgent(Agent):
    __slots__ = ()

    async def act(self, observation: Any) -> Decision:
        return 42.0  # type: ignore[return-value]  # a bug in user code


async def test_act_returning_a_non_decision_is_recorded(tmp_path: Path) -> None:
    population = pa.table({"agent_id": [0, 1], "group": [0, 0]})
    personas = PersonaTable(population)
    model = ScriptedModel()
    agents = [WrongAgent(i, i, personas, model) for i in range(2)]
    shard = AgentShard(0, agents, GuessGame([2], rounds=1), RunDirectory.create(tmp_path, "w"))
    await shard.step(1, shard.env.snapshot())
    errors = shard.run_dir.read_decisions(1).column("error").to_pylist()
    assert all("not a Decision" in str(e) for e in errors)
