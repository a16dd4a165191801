"""Prompt variants of the guess-2/3-of-the-average game (after Pan et al., 2024).

P1 answer directly; P2 think step by step; P3 adds "all players are rational";
P4 adds "everyone anticipates the others"; P5 is P2 with the agent's background.
Every variant asks for JSON so one call per decision suffices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from megasim.env.guess_game import GuessObservation
from megasim.model.base import ChatMessage

VARIANTS: tuple[str, ...] = ("P1", "P2", "P3", "P4", "P5")
DEFAULT_MAX_TOKENS: dict[str, int] = {"P1": 24, "P2": 160, "P3": 160, "P4": 160, "P5": 160}

_STEP_BY_STEP = "Think step by step about what the other players will choose."
_RATIONAL = "All players are rational."
_ANTICIPATE = "Every player anticipates how the others will choose and responds to it."
_INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "P1": ("Answer directly with your number.",),
    "P2": (_STEP_BY_STEP,),
    "P3": (_STEP_BY_STEP, _RATIONAL),
    "P4": (_STEP_BY_STEP, _RATIONAL, _ANTICIPATE),
    "P5": (_STEP_BY_STEP,),
}

GUESS_ONLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"guess": {"type": "number"}},
    "required": ["guess"],
}
REASONED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "maxLength": 400},
        "guess": {"type": "number"},
    },
    "required": ["reasoning", "guess"],
}

# Persona columns that are bookkeeping, not part of who the agent is.
_NOT_BACKGROUND = frozenset({"agent_id", "group", "model", "prompt_variant", "background"})


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: tuple[ChatMessage, ...]
    prompt_id: str
    schema: dict[str, Any]
    max_tokens: int


def fraction_text(x: float) -> str:
    frac = Fraction(x).limit_denominator(100)
    if abs(float(frac) - x) > 1e-9:
        return f"{x:g}"
    return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"


def target_text(ratio: float, offset: float) -> str:
    base = f"{fraction_text(ratio)} of the average of all chosen numbers"
    return f"{offset:g} plus {base}" if offset else base


def describe_background(persona: Mapping[str, Any]) -> str:
    """The persona's written background if it has one, else its attributes in words."""
    background = persona.get("background") if "background" in persona else None
    if isinstance(background, str) and background.strip():
        return background.strip()
    parts = [
        f"{name.replace('_', ' ')}: {value}"
        for name, value in persona.items()
        if name not in _NOT_BACKGROUND and not name.startswith("background") and value is not None
    ]
    return "; ".join(parts) if parts else "no particular background"


def build_prompt(
    variant: str,
    obs: GuessObservation,
    max_tokens: int,
    background: str | None = None,
) -> Prompt:
    """The chat messages one player receives; identical inputs give identical prompts."""
    system = (
        f"You are a player in a game with {obs.players} players. Each player chooses a "
        f"number between {obs.low:g} and {obs.high:g}. The player whose number is closest "
        f"to {target_text(obs.ratio, obs.offset)} wins."
    )
    if variant == "P5" and background:
        system += f"\nYour background: {background}"
    lines = [f"This is round {obs.round} of {obs.rounds}."]
    if obs.previous_winner is not None:
        lines.append(f"In the previous round the winning number was {obs.previous_winner:.2f}.")
    lines.extend(_INSTRUCTIONS[variant])
    if variant == "P1":
        lines.append('Reply with JSON only: {"guess": <number>}')
        schema = GUESS_ONLY_SCHEMA
    else:
        lines.append(
            'Reply with JSON only: {"reasoning": "<one or two sentences>", "guess": <number>}'
        )
        schema = REASONED_SCHEMA
    messages = (
        ChatMessage(role="system", content=system),
        ChatMessage(role="user", content="\n".join(lines)),
    )
    digest = hashlib.blake2b(
        "\x00".join(m.content for m in messages).encode(), digest_size=6
    ).hexdigest()
    return Prompt(messages, f"{variant}-{digest}", schema, max_tokens)
