"""Opinion dynamics in chat rooms: agents read their room, restate their view, and post.

Each agent starts from an opinion on a statement (the persona's ``opinion`` column, or
a seeded draw on the scale), and each step reads the recent posts of its room (keyed
state, see env/chatroom.py), answers with its current opinion and one message, and
remembers that opinion (agent state, checkpointed). Metrics per step: mean and spread
of opinions, per room and between rooms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from megasim.agent import Agent, Decision, PersonaTable
from megasim.env.chatroom import ChatObservation, ChatRoom
from megasim.env.group_stats import group_sizes
from megasim.model.base import ChatRequest, ModelClient
from megasim.model.parsing import parse_guess
from megasim.population.columns import numeric_column_problems
from megasim.scenarios.base import Scenario, ValueScale, settings_of
from megasim.scenarios.chat_prompts import build_chat_prompt, parse_message, room_block
from megasim.scenarios.chat_settings import ChatConfig
from megasim.scenarios.guess_prompts import describe_background
from megasim.seeding import CallSeeds, derive_seed, unit_float

if TYPE_CHECKING:
    from megasim.config import SimulationConfig

OPINION_COLUMN = "opinion"
_LOW, _HIGH = 0.0, 100.0


class RoomBook:
    """Shared by a shard's agents: the room part of the prompt, built once per room."""

    def __init__(self, seed: int, max_tokens: int) -> None:
        self.seed = seed
        self.max_tokens = max_tokens
        self._shared: dict[int, tuple[ChatObservation, str, dict[str, Any]]] = {}
        self.request_seed = CallSeeds(seed)  # (agent_id, step) -> the call's seed

    def shared(self, obs: ChatObservation) -> tuple[str, dict[str, Any]]:
        entry = self._shared.get(obs.room)
        if entry is None or entry[0] is not obs:
            opinions = [p.opinion for p in obs.recent]
            meta = {
                "task": "opinion",
                "step": obs.step,
                "low": obs.low,
                "high": obs.high,
                "peers": sum(opinions) / len(opinions) if opinions else None,
            }
            entry = self._shared[obs.room] = (obs, room_block(obs), meta)
        return entry[1], entry[2]

    def initial_opinion(self, agent_id: int, persona_value: Any) -> float:
        if isinstance(persona_value, int | float) and _LOW <= persona_value <= _HIGH:
            return float(persona_value)
        return round(_LOW + (_HIGH - _LOW) * unit_float(derive_seed(self.seed, 0, agent_id)), 1)


class ChatAgent(Agent):
    """One participant: one model call per step; its opinion is its checkpointed state."""

    __slots__ = ("book",)

    def __init__(
        self,
        agent_id: int,
        row: int,
        personas: PersonaTable,
        model: ModelClient,
        group: int,
        book: RoomBook,
    ) -> None:
        Agent.__init__(self, agent_id, row, personas, model, group, "chat")
        self.book = book

    @property
    def opinion(self) -> float:
        if self.state is not None and "opinion" in self.state:
            return float(self.state["opinion"])
        return self.book.initial_opinion(self.id, self.persona.get(OPINION_COLUMN))

    async def act(self, observation: ChatObservation) -> Decision:
        own = self.opinion
        shared, context = self.book.shared(observation)
        prompt = build_chat_prompt(
            shared, own, describe_background(self.persona), self.book.max_tokens, observation
        )
        request = ChatRequest(
            prompt.messages,
            prompt.max_tokens,
            None,
            self.book.request_seed(self.id, observation.step),
            prompt.schema,
            self.id,
            self.persona,
            {**context, "own": own},
        )
        response = await self.model.complete(request)
        latency_ms = response.latency_s * 1000
        if response.error is not None:
            return Decision(
                None,
                False,
                None,
                prompt.prompt_id,
                0,
                0,
                latency_ms,
                response.error,
                prompt=prompt.messages,
            )
        parsed = parse_guess(response.text, observation.low, observation.high, "opinion")
        if parsed.valid and parsed.value is not None:
            self.memory["opinion"] = parsed.value  # an unusable answer keeps the old view
        return Decision(
            parsed.value,
            parsed.valid,
            response.text,
            prompt.prompt_id,
            response.tokens_in,
            response.tokens_out,
            latency_ms,
            None if parsed.valid else f"parse: {parsed.reason}",
            parse_message(response.text) if parsed.valid else None,
            prompt=prompt.messages,
        )


class ChatOpinion(Scenario):
    """Scenario object for ``scenario: chat_opinion``."""

    name = "chat_opinion"
    section = "chat"
    settings_model = ChatConfig
    headline = ("room_spread", "spread")  # highest minus lowest room mean
    keyed_state = True

    def value_scale(self, settings: Any) -> ValueScale:
        return ValueScale(low=_LOW, high=_HIGH, scored=False, label="Stated opinions")

    def build_env(self, config: SimulationConfig, population: pa.Table) -> ChatRoom:
        chat = settings_of(config, ChatConfig)
        return ChatRoom(
            room_sizes=group_sizes(population),
            steps=config.rounds,
            statement=chat.statement,
            window=chat.window,
            low=_LOW,
            high=_HIGH,
            seed=config.seed,
        )

    def build_agents(
        self, config: SimulationConfig, population: pa.Table, models: Mapping[str, ModelClient]
    ) -> list[Agent]:
        personas = PersonaTable(population)
        book = RoomBook(config.seed, settings_of(config, ChatConfig).max_tokens)
        ids = population.column("agent_id").to_pylist()
        groups = population.column("group").to_pylist()
        names = population.column("model").to_pylist()
        return [
            ChatAgent(agent_id, row, personas, models[name], group, book)
            for row, (agent_id, group, name) in enumerate(zip(ids, groups, names, strict=True))
        ]

    def check_population(self, population: pa.Table) -> list[str]:
        if OPINION_COLUMN not in population.column_names:
            return []
        return numeric_column_problems(population, OPINION_COLUMN, _LOW, _HIGH)
