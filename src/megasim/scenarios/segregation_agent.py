"""A resident of the segregation scenario: looks at its neighbours, stays or moves.

Its decision value is the cell it wants to live in after the step (its own cell when it
stays): that is what ``GridWorld.reduce`` turns into move requests, and what a DuckDB
query over the step files shows per agent. ``text`` says ``stay`` or ``move <letter>``.
"""

from __future__ import annotations

from megasim.agent import Agent, Decision, PersonaTable
from megasim.env.grid_view import GridView
from megasim.model.base import ChatMessage, ChatRequest, ModelClient
from megasim.scenarios.guess_prompts import describe_background
from megasim.scenarios.segregation_prompts import (
    STAY,
    SYSTEM,
    choice_schema,
    parse_choice,
    template,
    template_id,
    user_text,
)
from megasim.seeding import CallSeeds


class ResidentBook:
    """Shared by a shard's residents: settings, the prompt template, call seeds."""

    def __init__(
        self, seed: int, steps: int, tolerance: str, threshold: float, max_tokens: int
    ) -> None:
        self.steps = steps
        self.tolerance = tolerance
        self.threshold = threshold
        self.max_tokens = max_tokens
        self.prompt_id = template_id(tolerance)
        self.template = template(tolerance)
        self.request_seed = CallSeeds(seed)
        self._system: dict[int, ChatMessage] = {}  # shard row -> system message

    def system(self, agent: Agent) -> ChatMessage:
        """The agent's system message, built once: its persona never changes."""
        message = self._system.get(agent.row)
        if message is None:
            message = ChatMessage("system", SYSTEM + describe_background(agent.persona))
            self._system[agent.row] = message
        return message


class Resident(Agent):
    """One model call per step; no state of its own (where it lives is the grid's)."""

    __slots__ = ("book",)

    def __init__(
        self,
        agent_id: int,
        row: int,
        personas: PersonaTable,
        model: ModelClient,
        group: int,
        book: ResidentBook,
    ) -> None:
        Agent.__init__(self, agent_id, row, personas, model, group, "segregation")
        self.book = book

    async def act(self, observation: GridView) -> Decision:
        view, book = observation, self.book
        messages = (
            book.system(self),
            ChatMessage("user", user_text(view, book.steps, book.tolerance)),
        )
        meta = {
            "task": "segregation",
            "step": view.step,
            "threshold": book.threshold,
            "here": (view.same, view.occupied),
            "offers": tuple((p.counts[view.group], sum(p.counts)) for p in view.offers),
        }
        request = ChatRequest(
            messages,
            book.max_tokens,
            None,
            book.request_seed(self.id, view.step),
            choice_schema(len(view.offers)),
            self.id,
            self.persona,
            meta,
        )
        response = await self.model.complete(request)
        latency_ms = response.latency_s * 1000
        if response.error is not None:
            return Decision(
                None, False, None, book.prompt_id, 0, 0, latency_ms, response.error,
                prompt=book.template,
            )  # fmt: skip
        choice = parse_choice(response.text, len(view.offers))
        if choice is None:
            return Decision(
                None, False, response.text, book.prompt_id, response.tokens_in,
                response.tokens_out, latency_ms, "parse: no stay or offered letter",
                prompt=book.template,
            )  # fmt: skip
        if choice == STAY:
            cell, said = view.here.cell, STAY
        else:
            cell, said = view.offers[ord(choice) - ord("A")].cell, f"move {choice}"
        return Decision(
            float(cell), True, response.text, book.prompt_id, response.tokens_in,
            response.tokens_out, latency_ms, None, said, prompt=book.template,
        )  # fmt: skip
