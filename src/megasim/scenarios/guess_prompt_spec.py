"""The guess game's prompts as data: named parts composed into system and user messages.

A prompt is two lists of part names (system, user). Parts are short texts in our own
wording with ``{placeholders}``; ``game.parts`` rewords a built-in part or adds a new one,
``game.prompts`` defines new prompts, so a study can add, remove or reword parts without
code. P1-P5 are presets built from the same parts; their texts (and so their prompt ids)
are those megasim always sent. Only pydantic here: config.py imports this module.
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROMPT_NAME = re.compile(r"[A-Za-z0-9._-]{1,40}")  # part of prompt ids and cell ids
Memory = Literal["none", "last_winner", "full"]
AnswerMode = Literal["structured", "extract"]

# Every placeholder a part may use; values are formatted before they reach the text.
PLACEHOLDERS: frozenset[str] = frozenset(
    {"players", "low", "high", "target", "round", "rounds", "winner", "background", "makeup"}
)

PARTS: dict[str, str] = {
    # system parts
    "rule": (
        "You are a player in a game with {players} players. Each player chooses a number "
        "between {low} and {high}. The player whose number is closest to {target} wins."
    ),
    "rational": "All players are rational.",
    "anticipate": "Every player anticipates how the others will choose and responds to it.",
    "famous_game": "This game is a variation of a famous number-guessing game.",
    "background": "Your background: {background}",
    "makeup": "The players: {makeup}.",
    # user parts
    "round": "This is round {round} of {rounds}.",
    "directly": "Answer directly with your number.",
    "step_by_step": "Think step by step about what the other players will choose.",
}
# Parts whose text comes from the game's settings (memory, answer mode), not a template.
DYNAMIC_PARTS: frozenset[str] = frozenset({"memory", "answer"})
# Parts left out when their value is missing (no background, no disclosed make-up).
OPTIONAL_PARTS: dict[str, str] = {"background": "background", "makeup": "makeup"}

MEMORY_LAST = "In the previous round the winning number was {winner}."
MEMORY_HEADER = "Your earlier rounds:"
MEMORY_ROUND = "Round {past}: you chose {answer}; the winning number was {winner}."
ANSWER_GUESS = 'Reply with JSON only: {"guess": <number>}'
ANSWER_REASONED = 'Reply with JSON only: {"reasoning": "<one or two sentences>", "guess": <number>}'
ANSWER_FREE = "End your reply with the number you choose."


class PromptSpec(BaseModel):
    """One named prompt: part names for the system and the user message, in order."""

    model_config = ConfigDict(extra="forbid")

    system: list[str] = Field(default_factory=lambda: ["rule"], min_length=1)
    user: list[str] = Field(default_factory=lambda: ["round", "memory", "answer"], min_length=1)
    reasoning: bool | None = Field(
        None, description="JSON with a reasoning field; default: when step_by_step is a part"
    )
    max_tokens: int | None = Field(None, gt=0, le=8192)

    def wants_reasoning(self) -> bool:
        if self.reasoning is not None:
            return self.reasoning
        return "step_by_step" in self.system or "step_by_step" in self.user


_USER = ["round", "memory"]
PRESETS: dict[str, PromptSpec] = {
    "P1": PromptSpec(user=[*_USER, "directly", "answer"], reasoning=False),
    "P2": PromptSpec(user=[*_USER, "step_by_step", "answer"]),
    "P3": PromptSpec(user=[*_USER, "step_by_step", "rational", "answer"]),
    "P4": PromptSpec(user=[*_USER, "step_by_step", "rational", "anticipate", "answer"]),
    "P5": PromptSpec(system=["rule", "background"], user=[*_USER, "step_by_step", "answer"]),
}
PRESET_MAX_TOKENS: dict[str, int] = {"P1": 24, "P2": 160, "P3": 160, "P4": 160, "P5": 160}


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a template uses (ValueError for a malformed template)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def check_prompts(prompts: dict[str, PromptSpec], parts: dict[str, str]) -> None:
    """Raise ValueError naming the field when a prompt or part cannot be composed."""
    for name, text in parts.items():
        if name in DYNAMIC_PARTS:
            raise ValueError(f"parts.{name}: set by game.memory / game.answer_mode, not a text")
        try:
            used = placeholders(text)
        except ValueError as exc:
            raise ValueError(f"parts.{name}: malformed template: {exc}") from None
        unknown = sorted(used - PLACEHOLDERS)
        if unknown:
            known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
            raise ValueError(f"parts.{name}: unknown placeholders {unknown}; known: {known}")
    known_parts = set(PARTS) | DYNAMIC_PARTS | set(parts)
    for name, spec in prompts.items():
        if not PROMPT_NAME.fullmatch(name):
            raise ValueError(f"prompts.{name}: a prompt name is 1-40 letters, digits, . _ -")
        if name in PRESETS:
            raise ValueError(f"prompts.{name}: {name} is a preset; choose another name")
        for where in ("system", "user"):
            missing = [p for p in getattr(spec, where) if p not in known_parts]
            if missing:
                raise ValueError(
                    f"prompts.{name}.{where}: unknown parts {missing}; known: "
                    f"{sorted(known_parts)} (add new ones under game.parts)"
                )
