"""The paper's game: N agents guess a number; the winner is closest to ratio x mean + offset.

The scenario is plain async code over a Simulation handle; running it on one
process or a cluster is a runtime setting, not a change here.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from megasim.agent import Agent, Decision, PersonaTable
from megasim.env.group_stats import group_sizes
from megasim.env.guess_game import GuessGame, GuessObservation
from megasim.model.base import ChatRequest, ModelClient
from megasim.scenarios.base import Scenario, ValueScale, settings_of
from megasim.scenarios.guess_answers import (
    REPAIR_SEPARATOR,
    answer_extract,
    answer_structured,
    repair_instruction,
)
from megasim.scenarios.guess_prompt_spec import PROMPT_NAME
from megasim.scenarios.guess_prompts import (
    VARIANTS,
    Prompt,
    PromptStyle,
    compose,
    describe_background,
)
from megasim.scenarios.guess_settings import GameConfig
from megasim.seeding import CallSeeds

if TYPE_CHECKING:
    from megasim.config import SimulationConfig

__all__ = ["REPAIR_SEPARATOR", "GuessAgent", "GuessTwoThirds", "PromptBook", "repair_instruction"]


KEPT_ROUNDS = 2
"""Rounds whose shared prompts a PromptBook keeps: the current one and the one before."""

_Entry = tuple[GuessObservation, Prompt, dict[str, Any]]


def style_of(game: GameConfig) -> PromptStyle:
    return PromptStyle(game.prompts, game.parts, game.memory, game.answer_mode)


class PromptBook:
    """Shared by a shard's agents: caches prompts so a million agents build a handful."""

    def __init__(
        self,
        seed: int,
        max_tokens: Mapping[str, int],
        repair: bool = True,
        style: PromptStyle | None = None,
    ) -> None:
        self.seed = seed
        self.repair = repair  # one repair call for an unusable answer (structured mode)
        self.style = style or PromptStyle()
        self.configured_tokens = dict(max_tokens)
        self.max_tokens = {v: self.style.max_tokens(v, max_tokens) for v in self.style.known()}
        # per round, keyed by observation identity: observations are per-group objects
        # built once a step; only the rounds last used are kept (see _round_cache)
        self._cache: OrderedDict[int, dict[tuple[str, int], _Entry]] = OrderedDict()
        self.request_seed = CallSeeds(seed)  # (agent_id, round) -> the call's seed

    def prompt(
        self, agent: GuessAgent, obs: GuessObservation, history: list[list[Any]] | None = None
    ) -> tuple[Prompt, dict[str, Any]]:
        """The agent's prompt and the request context shared by all who get that prompt."""
        cache = self._round_cache(obs.round)
        key = (agent.variant, id(obs))
        entry = cache.get(key)
        makeup = obs.makeup if isinstance(obs, DisclosedObservation) else None
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
            tokens = self.max_tokens[agent.variant]
            prompt = compose(agent.variant, obs, tokens, self.style, None, None, makeup)
            entry = cache[key] = (obs, prompt, meta)
        if self.style.personal(agent.variant):  # background or own history in the text
            background = None
            if self.style.uses(agent.variant, "background"):
                background = describe_background(agent.persona)
            tokens = self.max_tokens[agent.variant]
            personal = compose(agent.variant, obs, tokens, self.style, background, history, makeup)
            return personal, entry[2]
        return entry[1], entry[2]

    def _round_cache(self, step: int) -> dict[tuple[str, int], _Entry]:
        """The prompts of ``step``; a new step evicts all but the ``KEPT_ROUNDS`` last used.

        A shard lives for the whole run, so without eviction every round's prompts (groups
        x variants of them, each holding its observation) would stay in memory to the end.
        Two rounds, not one: a step rerun after a lost shard asks for the previous
        round's prompts again."""
        cache = self._cache.get(step)
        if cache is None:
            cache = self._cache[step] = {}
            while len(self._cache) > KEPT_ROUNDS:
                self._cache.popitem(last=False)
        elif next(reversed(self._cache)) != step:
            self._cache.move_to_end(step)
        return cache

    @property
    def cached_prompts(self) -> int:
        """Shared prompts held now (a bounded number: the last rounds' only)."""
        return sum(len(cache) for cache in self._cache.values())


@dataclass(frozen=True, slots=True)
class DisclosedObservation(GuessObservation):
    """An observation that also states the make-up of the player's group (``game.disclose``)."""

    makeup: str = ""


class DisclosingGuessGame(GuessGame):
    """The game whose players are told their group's make-up by one population column.

    Counted by the driver over the whole population (a shard holds only a slice) and
    carried to shards in the environment state."""

    def __init__(self, makeup: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state["makeup"] = makeup

    def prepare(self) -> None:
        super().prepare()
        texts = self.state["makeup"]
        self._observations = [
            DisclosedObservation(**asdict(o), makeup=texts[o.group]) for o in self._observations
        ]


def makeup_texts(population: pa.Table, column: str, groups: int) -> list[str]:
    """Per group: "40 with education level Bachelor, 30 with ..." (most common first)."""
    if column not in population.column_names:
        raise ValueError(f"game.disclose: the population has no column {column!r}")
    counts: list[Counter[str]] = [Counter() for _ in range(groups)]
    for group, value in zip(
        population.column("group").to_pylist(), population.column(column).to_pylist(), strict=True
    ):
        counts[group][str(value)] += 1
    label = column.replace("_", " ")
    return [
        ", ".join(
            f"{n} with {label} {value}"
            for value, n in sorted(c.items(), key=lambda item: (-item[1], item[0]))
        )
        for c in counts
    ]


class GuessAgent(Agent):
    """One player: one decision per round (one or more model calls, see guess_answers)."""

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

    def _history(self, obs: GuessObservation) -> list[list[Any]] | None:
        """Memory ``full``: [own answer, winning number] per earlier round, kept in the
        agent's checkpointed state; the last round's winner is learnt from ``obs``."""
        if self.book.style.memory != "full":
            return None
        history: list[list[Any]] = self.memory.setdefault("history", [])
        if history and history[-1][1] is None and obs.previous_winner is not None:
            history[-1][1] = obs.previous_winner
        return [list(entry) for entry in history]

    async def act(self, observation: GuessObservation) -> Decision:
        history = self._history(observation)
        prompt, context = self.book.prompt(self, observation, history)
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
        if self.book.style.answer_mode == "extract":
            decision = await answer_extract(self.model, request, prompt, observation)
        else:
            decision = await answer_structured(
                self.model, request, prompt, observation, self.book.repair
            )
        if history is not None:
            self.memory["history"].append([decision.value if decision.valid else None, None])
        return decision


def game_settings(config: SimulationConfig) -> GameConfig:
    """The ``game:`` section of a guessing-game run's config."""
    return settings_of(config, GameConfig)


class GuessTwoThirds(Scenario):
    """Scenario object: how to build the environment and agents, and the round loop."""

    name = "guess_two_thirds"
    section = "game"
    settings_model = GameConfig
    headline = ("winner", "winner")
    variants = VARIANTS

    def value_scale(self, settings: Any) -> ValueScale:
        game = settings if isinstance(settings, GameConfig) else GameConfig()
        return ValueScale(game.ratio, game.offset, game.low, game.high)

    def build_env(self, config: SimulationConfig, population: pa.Table) -> GuessGame:
        game = game_settings(config)
        settings: dict[str, Any] = {
            "group_sizes": group_sizes(population),
            "rounds": config.rounds,
            "ratio": game.ratio,
            "offset": game.offset,
            "low": game.low,
            "high": game.high,
        }
        if game.disclose is None:
            return GuessGame(**settings)
        try:
            texts = makeup_texts(population, game.disclose, len(settings["group_sizes"]))
        except ValueError as exc:
            from megasim.config import ConfigError

            raise ConfigError(str(exc)) from None
        return DisclosingGuessGame(texts, **settings)

    def build_agents(
        self,
        config: SimulationConfig,
        population: pa.Table,
        models: Mapping[str, ModelClient],
    ) -> list[Agent]:
        personas = PersonaTable(population)
        game = game_settings(config)
        style = style_of(game)
        variants = population.column("prompt_variant").to_pylist()
        unknown = sorted({str(v) for v in variants} - set(style.known()))
        if unknown:
            from megasim.config import ConfigError

            raise ConfigError(
                f"population: unknown prompt variants {unknown}; known: presets "
                f"{list(VARIANTS)} and game.prompts {sorted(game.prompts)}"
            )
        book = PromptBook(config.seed, game.max_tokens, game.repair, style)
        ids = population.column("agent_id").to_pylist()
        groups = population.column("group").to_pylist()
        model_names = population.column("model").to_pylist()
        return [
            GuessAgent(agent_id, row, personas, models[model_name], group, variant, book)
            for row, (agent_id, group, model_name, variant) in enumerate(
                zip(ids, groups, model_names, variants, strict=True)
            )
        ]

    def check_population(self, population: pa.Table) -> list[str]:
        """Problems with the population for this game: prompt variants that are neither a
        preset nor a possible prompt name (names from ``game.prompts`` are checked by
        build_agents, which sees the config)."""
        found = {str(v) for v in population.column("prompt_variant").unique().to_pylist()}
        odd = sorted(v for v in found - set(VARIANTS) if not PROMPT_NAME.fullmatch(v))
        if odd:
            return [f"unknown prompt variants {odd}; known: {list(VARIANTS)} and game.prompts"]
        return []
