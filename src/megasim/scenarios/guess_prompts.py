"""Prompts of the guess-2/3-of-the-average game (after Pan et al., 2024), composed from parts.

Presets: P1 answer directly; P2 think step by step; P3 adds "all players are rational";
P4 adds "everyone anticipates the others"; P5 is P2 with the agent's background. Further
prompts, reworded parts, memory and answer mode come from the config (see
guess_prompt_spec.py). Identical inputs give identical texts, and the prompt id is the
variant plus a digest of the text sent, so an id names exactly one text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from megasim.env.guess_game import GuessObservation
from megasim.model.base import ChatMessage
from megasim.scenarios.guess_prompt_spec import (
    ANSWER_FREE,
    ANSWER_GUESS,
    ANSWER_REASONED,
    MEMORY_HEADER,
    MEMORY_LAST,
    MEMORY_ROUND,
    OPTIONAL_PARTS,
    PARTS,
    PRESET_MAX_TOKENS,
    PRESETS,
    AnswerMode,
    Memory,
    PromptSpec,
    placeholders,
)

VARIANTS: tuple[str, ...] = tuple(PRESETS)
DEFAULT_MAX_TOKENS: dict[str, int] = dict(PRESET_MAX_TOKENS)

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
    schema: dict[str, Any] | None  # None: free text (answer_mode extract)
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


def _number(x: float | None) -> str:
    return "no valid answer" if x is None else f"{x:.2f}"


@dataclass(frozen=True, slots=True)
class PromptStyle:
    """The config's prompt settings: extra prompts, reworded parts, memory, answer mode."""

    prompts: Mapping[str, PromptSpec] = field(default_factory=dict)
    parts: Mapping[str, str] = field(default_factory=dict)
    memory: Memory = "last_winner"
    answer_mode: AnswerMode = "structured"

    def spec(self, variant: str) -> PromptSpec:
        found = PRESETS.get(variant) or self.prompts.get(variant)
        if found is None:
            raise KeyError(variant)
        return found

    def known(self) -> list[str]:
        return [*PRESETS, *self.prompts]

    def text(self, part: str) -> str:
        return self.parts.get(part, PARTS.get(part, ""))

    def uses(self, variant: str, placeholder: str) -> bool:
        """Whether the variant's text needs ``placeholder`` (e.g. a personal background)."""
        spec = self.spec(variant)
        return any(placeholder in placeholders(self.text(p)) for p in (*spec.system, *spec.user))

    def personal(self, variant: str) -> bool:
        """Whether the text differs per agent (background or own history), not only per group."""
        return self.memory == "full" or self.uses(variant, "background")

    def max_tokens(self, variant: str, configured: Mapping[str, int]) -> int:
        if variant in configured:
            return configured[variant]
        spec = self.spec(variant)
        if spec.max_tokens is not None:
            return spec.max_tokens
        default = DEFAULT_MAX_TOKENS.get(variant)
        return default if default is not None else (160 if spec.wants_reasoning() else 24)


DEFAULT_STYLE = PromptStyle()


def _memory_lines(
    style: PromptStyle, obs: GuessObservation, history: Sequence[Sequence[Any]] | None
) -> list[str]:
    if style.memory == "last_winner" and obs.previous_winner is not None:
        return [MEMORY_LAST.format(winner=f"{obs.previous_winner:.2f}")]
    if style.memory == "full" and history:
        lines = [MEMORY_HEADER]
        for past, (answer, winner) in enumerate(history, start=1):
            lines.append(
                MEMORY_ROUND.format(past=past, answer=_number(answer), winner=_number(winner))
            )
        return lines
    return []


def _answer_line(style: PromptStyle, spec: PromptSpec) -> str:
    if style.answer_mode == "extract":
        return ANSWER_FREE
    return ANSWER_REASONED if spec.wants_reasoning() else ANSWER_GUESS


def compose(
    variant: str,
    obs: GuessObservation,
    max_tokens: int,
    style: PromptStyle = DEFAULT_STYLE,
    background: str | None = None,
    history: Sequence[Sequence[Any]] | None = None,
    makeup: str | None = None,
) -> Prompt:
    """The chat messages one player receives; identical inputs give identical prompts.

    ``history``: (own answer, winning number) of each earlier round (memory ``full``);
    ``makeup``: the disclosed make-up of the player's group (part ``makeup``)."""
    spec = style.spec(variant)
    values = {
        "players": str(obs.players),
        "low": f"{obs.low:g}",
        "high": f"{obs.high:g}",
        "target": target_text(obs.ratio, obs.offset),
        "round": str(obs.round),
        "rounds": str(obs.rounds),
        "winner": _number(obs.previous_winner),
        "background": background or "",
        "makeup": makeup or "",
    }

    def render(names: Sequence[str]) -> str:
        lines: list[str] = []
        for name in names:
            if name == "memory":
                lines.extend(_memory_lines(style, obs, history))
            elif name == "answer":
                lines.append(_answer_line(style, spec))
            elif not (name in OPTIONAL_PARTS and not values[OPTIONAL_PARTS[name]]):
                lines.append(style.text(name).format(**values))
        return "\n".join(lines)

    messages = (
        ChatMessage(role="system", content=render(spec.system)),
        ChatMessage(role="user", content=render(spec.user)),
    )
    digest = hashlib.blake2b(
        "\x00".join(m.content for m in messages).encode(), digest_size=6
    ).hexdigest()
    schema: dict[str, Any] | None = None
    if style.answer_mode == "structured":
        schema = REASONED_SCHEMA if spec.wants_reasoning() else GUESS_ONLY_SCHEMA
    return Prompt(messages, f"{variant}-{digest}", schema, max_tokens)


def build_prompt(
    variant: str,
    obs: GuessObservation,
    max_tokens: int,
    background: str | None = None,
) -> Prompt:
    """A preset's prompt with the default settings (memory: last winner, JSON answers)."""
    return compose(variant, obs, max_tokens, DEFAULT_STYLE, background)
