"""The social network's agents: read the feed, decide a stance and one action, one call.

Structured output asks for ``{"opinion", "action", "target", "message"}`` so that one
call per active agent and step suffices. The request's meta says ``task: opinion`` with
the agent's own stance and the feed's mean stance (``peers``), which is what the
surrogate model answers (a DeGroot-style move towards the feed); answers that name no
action get the environment's seeded fallback (env/network.py, ``fallback_action``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from megasim.agent import Agent, Decision, PersonaTable
from megasim.env.network import NetworkObservation
from megasim.env.network_stats import ACTIONS
from megasim.model.base import ChatMessage, ChatRequest, ModelClient
from megasim.model.parsing import parse_guess
from megasim.scenarios.chat_prompts import parse_message
from megasim.scenarios.guess_prompts import describe_background
from megasim.seeding import CallSeeds, derive_seed, unit_float

STANCE_COLUMN = "stance"
LOW, HIGH = 0.0, 100.0
SOCIAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "opinion": {"type": "number"},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "target": {"type": "integer"},
        "message": {"type": "string", "maxLength": 280},
    },
    "required": ["opinion", "action", "message"],
}


class SocialBook:
    """Shared by a shard's agents: seeds, token budget, initial stances."""

    def __init__(self, seed: int, max_tokens: int) -> None:
        self.seed = seed
        self.max_tokens = max_tokens
        self.request_seed = CallSeeds(seed)

    def initial_stance(self, agent_id: int, group: int, persona_value: Any) -> float:
        """The persona's ``stance`` column (0-100), else a seeded draw around 25 for even
        communities and 75 for odd ones (a divided starting point)."""
        if isinstance(persona_value, int | float) and LOW <= persona_value <= HIGH:
            return float(persona_value)
        centre = 25.0 if group % 2 == 0 else 75.0
        u = unit_float(derive_seed(self.seed, 0, agent_id))
        return round(min(HIGH, max(LOW, centre + 40.0 * (u - 0.5))), 1)


def feed_block(obs: NetworkObservation) -> str:
    if not obs.feed:
        return "Your feed is empty."
    lines = ["Your feed:"]
    for n, item in enumerate(obs.feed, 1):
        shared = " (repost)" if item.ref else ""
        lines.append(
            f"[{n}] person {item.author}{shared}, stance {item.stance:g}, {item.likes} likes: "
            f"{item.text}"
        )
    return "\n".join(lines)


def build_messages(
    obs: NetworkObservation, own: float, background: str
) -> tuple[tuple[ChatMessage, ...], str]:
    system = f"You are a person using a social network. Your background: {background}"
    user = (
        f'Topic: "{obs.topic}"\nScale: {obs.low:g} = strongly disagree, {obs.high:g} = '
        f"strongly agree. Your stance so far: {own:g}. You follow {obs.following} people.\n"
        f"{feed_block(obs)}\n"
        "Decide what you now think and do one thing: post, like, repost, comment, follow "
        "(the author), unfollow (the author) or none. Reply with JSON only: "
        f'{{"opinion": <{obs.low:g}-{obs.high:g}>, "action": "<one of those>", '
        '"target": <feed item number, for like/repost/comment/follow/unfollow>, '
        '"message": "<your post or comment, one sentence>"}'
    )
    digest = hashlib.blake2b(user.encode(), digest_size=6).hexdigest()
    return (ChatMessage("system", system), ChatMessage("user", user)), f"social-{digest}"


class SocialAgent(Agent):
    """One account: one model call per active step; its stance is checkpointed state."""

    __slots__ = ("book",)

    def __init__(
        self,
        agent_id: int,
        row: int,
        personas: PersonaTable,
        model: ModelClient,
        group: int,
        book: SocialBook,
    ) -> None:
        Agent.__init__(self, agent_id, row, personas, model, group, "social")
        self.book = book

    @property
    def stance(self) -> float:
        if self.state is not None and "stance" in self.state:
            return float(self.state["stance"])
        return self.book.initial_stance(self.id, self.group, self.persona.get(STANCE_COLUMN))

    async def act(self, observation: NetworkObservation) -> Decision:
        own = self.stance
        messages, prompt_id = build_messages(observation, own, describe_background(self.persona))
        stances = [i.stance for i in observation.feed]
        meta = {
            "task": "opinion",
            "step": observation.step,
            "low": observation.low,
            "high": observation.high,
            "own": own,
            "peers": sum(stances) / len(stances) if stances else None,
        }
        request = ChatRequest(
            messages,
            self.book.max_tokens,
            None,
            self.book.request_seed(self.id, observation.step),
            SOCIAL_SCHEMA,
            self.id,
            self.persona,
            meta,
        )
        response = await self.model.complete(request)
        latency_ms = response.latency_s * 1000
        if response.error is not None:
            return Decision(
                None, False, None, prompt_id, 0, 0, latency_ms, response.error, prompt=messages
            )
        parsed = parse_guess(response.text, observation.low, observation.high, "opinion")
        if parsed.valid and parsed.value is not None:
            self.memory["stance"] = parsed.value  # an unusable answer keeps the old stance
        return Decision(
            parsed.value,
            parsed.valid,
            response.text,
            prompt_id,
            response.tokens_in,
            response.tokens_out,
            latency_ms,
            None if parsed.valid else f"parse: {parsed.reason}",
            parse_message(response.text) if parsed.valid else None,
            prompt=messages,
        )
