"""The paper's game: N agents guess a number; the winner is closest to ratio x mean + offset.

The scenario is plain async code over a Simulation handle; running it on one
process or a cluster is a runtime setting, not a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from megasim.agent import Agent, Decision, PersonaTable
from megasim.env.group_stats import group_sizes
from megasim.env.guess_game import GuessGame, GuessObservation
from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelClient
from megasim.model.parsing import parse_guess
from megasim.scenarios.guess_prompts import (
    DEFAULT_MAX_TOKENS,
    GUESS_ONLY_SCHEMA,
    VARIANTS,
    Prompt,
    build_prompt,
    describe_background,
)
from megasim.seeding import CallSeeds

if TYPE_CHECKING:
    from megasim.config import SimulationConfig
    from megasim.simulation import Simulation


class PromptBook:
    """Shared by a shard's agents: caches prompts so a million agents build a handful."""

    def __init__(self, seed: int, max_tokens: Mapping[str, int], repair: bool = True) -> None:
        self.seed = seed
        self.repair = repair  # one repair call for an unusable answer
        self.max_tokens = {**DEFAULT_MAX_TOKENS, **max_tokens}
        # keyed by observation identity: observations are per-group objects built once a step
        self._cache: dict[tuple[str, int], tuple[GuessObservation, Prompt, dict[str, Any]]] = {}
        self.request_seed = CallSeeds(seed)  # (agent_id, round) -> the call's seed

    def prompt(self, agent: GuessAgent, obs: GuessObservation) -> tuple[Prompt, dict[str, Any]]:
        """The agent's prompt and the request context shared by all who get that prompt."""
        key = (agent.variant, id(obs))
        entry = self._cache.get(key)
        if entry is None or entry[0] is not obs:
            meta = {
                "step": obs.round,
                "variant": agent.variant,
                "previous_winner": obs.previous_winner,
                "ratio": obs.ratio,
                "offset": obs.offset,
                "low": obs.low,
                "high": obs.high,
            }
            prompt = build_prompt(agent.variant, obs, self.max_tokens[agent.variant])
            entry = self._cache[key] = (obs, prompt, meta)
        if agent.variant == "P5":  # personal: the background is part of the prompt
            background = describe_background(agent.persona)
            return build_prompt("P5", obs, self.max_tokens["P5"], background), entry[2]
        return entry[1], entry[2]


REPAIR_SEPARATOR = "\n--- repair ---\n"


def repair_instruction(reason: str | None, obs: GuessObservation) -> str:
    return (
        f"That answer could not be used ({reason}). Reply with JSON only: "
        f'{{"guess": <a number between {obs.low:g} and {obs.high:g}>}}'
    )


class GuessAgent(Agent):
    """One player: one model call per round, answer parsed and range-checked."""

    __slots__ = ("book",)

    def __init__(
        self,
        agent_id: int,
        row: int,
        personas: PersonaTable,
        model: ModelClient,
        group: int,
        variant: str,
        book: PromptBook,
    ) -> None:
        Agent.__init__(self, agent_id, row, personas, model, group, variant)
        self.book = book

    async def act(self, observation: GuessObservation) -> Decision:
        prompt, context = self.book.prompt(self, observation)
        request = ChatRequest(
            prompt.messages,
            prompt.max_tokens,
            None,
            self.book.request_seed(self.id, observation.round),
            prompt.schema,
            self.id,
            self.persona,
            context,
        )
        response = await self.model.complete(request)
        if response.error is not None:
            return Decision(
                value=None,
                valid=False,
                raw_text=None,
                prompt_id=prompt.prompt_id,
                latency_ms=response.latency_s * 1000,
                error=f"model: {response.error}",
                prompt=prompt.messages,
            )
        parsed = parse_guess(response.text, observation.low, observation.high)
        if not parsed.valid and self.book.repair:
            return await self._repair(request, response, parsed.reason, prompt, observation)
        return Decision(
            parsed.value,
            parsed.valid,
            response.text,
            prompt.prompt_id,
            response.tokens_in,
            response.tokens_out,
            response.latency_s * 1000,
            None if parsed.valid else f"parse: {parsed.reason}",
            prompt=prompt.messages,
        )

    async def _repair(
        self,
        request: ChatRequest,
        first: ChatResponse,
        reason: str | None,
        prompt: Prompt,
        obs: GuessObservation,
    ) -> Decision:
        """One repair call for an unusable answer; both texts are kept in ``raw_text``."""
        messages = (
            *request.messages,
            ChatMessage("assistant", first.text),
            ChatMessage("user", repair_instruction(reason, obs)),
        )
        retry = ChatRequest(
            messages,
            24,
            None,
            (request.seed or 0) + 1,
            GUESS_ONLY_SCHEMA,
            self.id,
            request.persona,
            request.meta,
        )
        second = await self.model.complete(retry)
        parsed = parse_guess(second.text, obs.low, obs.high)
        error = None if parsed.valid else f"parse: {parsed.reason} (after repair: {reason})"
        if second.error is not None:
            error = f"parse: {reason}; repair call failed: {second.error}"
        return Decision(
            parsed.value if second.error is None else None,
            parsed.valid and second.error is None,
            f"{first.text}{REPAIR_SEPARATOR}{second.text}",
            f"{prompt.prompt_id}+repair",
            first.tokens_in + second.tokens_in,
            first.tokens_out + second.tokens_out,
            (first.latency_s + second.latency_s) * 1000,
            error,
            prompt=prompt.messages,
        )


class GuessTwoThirds:
    """Scenario object: how to build the environment and agents, and the round loop."""

    name = "guess_two_thirds"
    variants = VARIANTS

    def build_env(self, config: SimulationConfig, population: pa.Table) -> GuessGame:
        return GuessGame(
            group_sizes=group_sizes(population),
            rounds=config.rounds,
            ratio=config.game.ratio,
            offset=config.game.offset,
            low=config.game.low,
            high=config.game.high,
        )

    def build_agents(
        self,
        config: SimulationConfig,
        population: pa.Table,
        models: Mapping[str, ModelClient],
    ) -> list[Agent]:
        personas = PersonaTable(population)
        book = PromptBook(config.seed, config.game.max_tokens, config.game.repair)
        ids = population.column("agent_id").to_pylist()
        groups = population.column("group").to_pylist()
        model_names = population.column("model").to_pylist()
        variants = population.column("prompt_variant").to_pylist()
        return [
            GuessAgent(agent_id, row, personas, models[model_name], group, variant, book)
            for row, (agent_id, group, model_name, variant) in enumerate(
                zip(ids, groups, model_names, variants, strict=True)
            )
        ]

    def check_population(self, population: pa.Table) -> list[str]:
        """Problems with the population for this game (unknown prompt variants)."""
        found = set(population.column("prompt_variant").unique().to_pylist())
        unknown = sorted(str(v) for v in found - set(VARIANTS))
        if unknown:
            return [f"unknown prompt variants {unknown}; known: {list(VARIANTS)}"]
        return []

    async def run(self, sim: Simulation) -> None:
        await sim.step_until(sim.config.rounds)  # a resumed run continues where it was
