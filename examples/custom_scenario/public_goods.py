"""A public goods game, written as a user would: outside megasim, through its public API.

Each round every agent holds ``endowment`` tokens and says how many it puts into its
group's common pot; the pot is multiplied by ``multiplier`` and shared equally within the
group. Agents see last round's average contribution in their group and their own payoff.
docs/cookbook.md builds this file step by step.

Run it:  megasim run examples/custom_scenario/public_goods.yaml
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

from megasim.agent import Agent, Decision, PersonaTable
from megasim.config import SimulationConfig
from megasim.env.base import DecisionBatch, Environment
from megasim.model.base import ChatMessage, ChatRequest, ModelClient
from megasim.model.parsing import parse_guess
from megasim.model.stand_in import register_stand_in
from megasim.scenarios.base import Scenario, ValueScale, settings_of
from megasim.seeding import CallSeeds, mix64
from megasim.store.run_dir import RunDirectory


# --- 1. settings: the config section `public_goods:` ---------------------------------------
class PublicGoodsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in the YAML is an error

    endowment: float = Field(10.0, gt=0, description="tokens each agent holds per round")
    multiplier: float = Field(1.6, gt=1, description="the pot grows by this, then is shared")
    max_tokens: int = Field(48, ge=8, le=1024)


# --- 2. the environment: shared state, and the per-step reduction ---------------------------
class PublicGoodsEnv(Environment):
    """Groups' pots. Shards reduce their decisions to sums per group; the driver combines."""

    name = "public_goods"

    def __init__(self, groups: int, endowment: float, multiplier: float) -> None:
        super().__init__()
        self.state = {
            "groups": groups,
            "low": 0.0,  # answer_range(): the per-step histogram in metrics.jsonl
            "high": endowment,
            "endowment": endowment,
            "multiplier": multiplier,
            "step": 0,
            "group_mean": [None] * groups,  # last round's mean contribution per group
            "group_share": [None] * groups,  # what each member got back from the pot
        }

    def observe(self, agent: Agent) -> dict[str, Any]:
        return {
            "step": self.state["step"] + 1,
            "endowment": self.state["endowment"],
            "multiplier": self.state["multiplier"],
            "last_mean": self.state["group_mean"][agent.group],
            "last_share": self.state["group_share"][agent.group],
        }

    def reduce(self, batch: DecisionBatch) -> dict[str, Any]:
        groups = int(self.state["groups"])
        ok = batch.valid
        sums = np.bincount(batch.groups[ok], weights=batch.values[ok], minlength=groups)
        members = np.bincount(batch.groups, minlength=groups)  # a failed answer gives 0
        return {
            "n": int(batch.agent_ids.size),
            "valid": int(ok.sum()),
            "sums": sums.tolist(),
            "members": members.tolist(),
        }

    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        groups = int(self.state["groups"])
        sums, members = np.zeros(groups), np.zeros(groups)
        for p in partials:
            sums += np.asarray(p["sums"])
            members += np.asarray(p["members"])
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(members > 0, sums / members, np.nan)
            shares = np.where(members > 0, sums * self.state["multiplier"] / members, np.nan)
        total = float(members.sum())
        return {
            "n": int(total),
            "valid": sum(int(p["valid"]) for p in partials),
            "mean": float(sums.sum() / total) if total else None,
            "pot": float(sums.sum() * self.state["multiplier"]),
            "group_mean": [None if np.isnan(m) else float(m) for m in means],
            "group_share": [None if np.isnan(s) else float(s) for s in shares],
        }

    async def apply(self, step: int, outcome: Mapping[str, Any]) -> None:
        self.state["group_mean"] = list(outcome["group_mean"])
        self.state["group_share"] = list(outcome["group_share"])
        await super().apply(step, outcome)  # step number, then the "step_end" event


# --- 3. the agent: a prompt, one model call, a parsed answer --------------------------------
SCHEMA = {
    "type": "object",
    "properties": {"contribution": {"type": "number"}},
    "required": ["contribution"],
}


class Contributor(Agent):
    __slots__ = ("seeds", "settings")

    def __init__(
        self,
        agent_id: int,
        row: int,
        personas: PersonaTable,
        model: ModelClient,
        group: int,
        settings: PublicGoodsSettings,
        seeds: CallSeeds,
    ) -> None:
        super().__init__(agent_id, row, personas, model, group)
        self.settings = settings
        self.seeds = seeds  # (agent, step) -> a reproducible sampling seed

    def prompt(self, seen: Mapping[str, Any]) -> tuple[ChatMessage, ...]:
        rules = (
            f"You play a public goods game. You hold {seen['endowment']:g} tokens. Say how "
            f"many you put into your group's pot. The pot is multiplied by "
            f"{seen['multiplier']:g} and shared equally by every member; you keep the rest."
        )
        if seen["last_mean"] is not None:
            rules += (
                f" Last round your group put in {seen['last_mean']:.1f} on average and each "
                f"member got {seen['last_share']:.1f} back."
            )
        age = self.persona.get("age")
        who = f"You are {age} years old. " if age is not None else ""
        ask = f'{who}Answer with JSON only: {{"contribution": <0 to {seen["endowment"]:g}>}}'
        return (ChatMessage("system", rules), ChatMessage("user", ask))

    async def act(self, observation: Mapping[str, Any]) -> Decision:
        messages = self.prompt(observation)
        request = ChatRequest(
            messages,
            self.settings.max_tokens,
            None,
            self.seeds(self.id, observation["step"]),
            SCHEMA,
            self.id,
            self.persona,
            {
                "task": "public_goods",
                "step": observation["step"],
                "high": observation["endowment"],
                "last_mean": observation["last_mean"],
            },
        )
        response = await self.model.complete(request)
        if response.error is not None:  # already retried by the model layer
            return Decision(None, False, error=response.error, prompt=messages)
        parsed = parse_guess(response.text, 0.0, observation["endowment"], "contribution")
        return Decision(
            parsed.value,
            parsed.valid,
            response.text,
            tokens_in=response.tokens_in,
            tokens_out=response.tokens_out,
            latency_ms=response.latency_s * 1000,
            error=None if parsed.valid else f"parse: {parsed.reason}",
            prompt=messages,
        )


# --- 4. a stand-in answer for scale runs on the surrogate model (never LLM behaviour) -------
def conditional_cooperator(request: ChatRequest) -> str:
    """Give about what the group gave last round (first round: a seeded share), +-20 %."""
    high = float(request.meta["high"])
    noise = mix64(request.seed or 0) / 2**64  # a pure function of the call's seed
    anchor = request.meta.get("last_mean")
    base = high * noise if anchor is None else float(anchor) * (0.8 + 0.4 * noise)
    return f'{{"contribution": {round(min(high, max(0.0, base)), 1)}}}'


register_stand_in("public_goods", conditional_cooperator)


# --- 5. the scenario: ties it together, and adds its own report -----------------------------
class PublicGoods(Scenario):
    name = "public_goods"
    section = "public_goods"
    settings_model = PublicGoodsSettings
    headline = ("pot", "pot")  # `megasim run` prints each round's pot

    def build_env(self, config: SimulationConfig, population: pa.Table) -> PublicGoodsEnv:
        settings = settings_of(config, PublicGoodsSettings)
        groups = int(max(population.column("group").to_pylist(), default=0)) + 1
        return PublicGoodsEnv(groups, settings.endowment, settings.multiplier)

    def build_agents(
        self, config: SimulationConfig, population: pa.Table, models: Mapping[str, ModelClient]
    ) -> list[Agent]:
        settings = settings_of(config, PublicGoodsSettings)
        personas, seeds = PersonaTable(population), CallSeeds(config.seed)
        columns = population.select(["agent_id", "group", "model"]).to_pydict()
        return [
            Contributor(agent_id, row, personas, models[model], group, settings, seeds)
            for row, (agent_id, group, model) in enumerate(
                zip(columns["agent_id"], columns["group"], columns["model"], strict=True)
            )
        ]

    def value_scale(self, settings: Any) -> ValueScale:
        endowment = settings.endowment if settings is not None else 10.0
        return ValueScale(low=0.0, high=endowment, scored=False, label="Contributions")

    def report(self, run_dir: Path, out_dir: Path, console: Console) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [m for m in RunDirectory(run_dir).read_metrics() if "outcome" in m]
        table = Table(title="Public goods: pot per round")
        for column in ("round", "mean contribution", "pot"):
            table.add_column(column, justify="right")
        for m in steps:
            mean = m["outcome"].get("mean")
            table.add_row(
                str(m["step"]), "-" if mean is None else f"{mean:.2f}", f"{m['outcome']['pot']:.1f}"
            )
        console.print(table)
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.plot(
            [m["step"] for m in steps],
            [m["outcome"].get("mean") for m in steps],
            marker="o",
        )
        axes.set(xlabel="round", ylabel="mean contribution", title="Cooperation over rounds")
        path = out_dir / "contributions.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        return [path]
