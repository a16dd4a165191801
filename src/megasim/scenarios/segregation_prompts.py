"""Prompts and answer parsing of the segregation scenario.

One call per agent and step, structured: ``{"choice": "stay"}`` or the letter of one of
the offered empty cells. The prompt states what the agent sees in numbers (neighbours
per group, empty places) so that any model, and the surrogate's rule, reads the same.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

from megasim.env.grid_view import GridView, Place
from megasim.model.base import ChatMessage
from megasim.model.parsing import extract_json_object
from megasim.scenarios.segregation_stand_in import LETTERS

STAY = "stay"
SYSTEM = "You are a person deciding where to live in a town laid out as a grid. Your background: "
_WORD = re.compile(r"\b(stay|[A-H])\b", re.IGNORECASE)
_LABEL = re.compile(r"^\s*\[[\w-]+\]\s*")


@lru_cache(maxsize=16)
def choice_schema(offers: int) -> dict[str, Any]:
    """The JSON schema of an answer with ``offers`` offered cells."""
    options = [STAY, *LETTERS[:offers]]
    return {
        "type": "object",
        "properties": {"choice": {"type": "string", "enum": options}},
        "required": ["choice"],
    }


def describe(place: Place, size: int, labels: tuple[str, ...], own: int) -> str:
    """``3 a (your group), 2 b, 3 empty``."""
    return _describe(place.counts, place.empty, size, labels, own)


@lru_cache(maxsize=65536)
def _describe(
    counts: tuple[int, ...], empty: int, size: int, labels: tuple[str, ...], own: int
) -> str:
    """Cached: a handful of neighbourhood shapes repeat across half a million agents."""
    parts = [
        f"{n} {labels[g]}{' (your group)' if g == own else ''}" for g, n in enumerate(counts) if n
    ]
    if empty:
        parts.append(f"{empty} empty")
    outside = size - sum(counts) - empty
    if outside:
        parts.append(f"{outside} outside the town")
    return ", ".join(parts) if parts else "nobody"


def user_text(view: GridView, steps: int, tolerance: str) -> str:
    own = view.group
    lines = [
        f"Round {view.step} of {steps}. You belong to the group {view.labels[own]}. {tolerance}",
        f"Your home at ({view.here.x}, {view.here.y}); its {view.size} neighbouring places: "
        f"{describe(view.here, view.size, view.labels, own)}.",
    ]
    if view.offers:
        lines.append("Empty places you could move to instead, with their neighbours:")
        lines.extend(
            f"{LETTERS[i]}: ({p.x}, {p.y}): {describe(p, view.size, view.labels, own)}."
            for i, p in enumerate(view.offers)
        )
        options = " or ".join(f'{{"choice": "{LETTERS[i]}"}}' for i in range(len(view.offers)))
        lines.append(f'Stay or move? Reply with JSON only: {{"choice": "stay"}} or {options}')
    else:
        lines.append('There is no empty place to move to. Reply with JSON only: {"choice": "stay"}')
    return "\n".join(lines)


def template_id(tolerance: str) -> str:
    """The prompt id shared by every agent (their prompts differ only in the numbers)."""
    digest = hashlib.blake2b((SYSTEM + tolerance).encode(), digest_size=6).hexdigest()
    return f"seg-{digest}"


def template(tolerance: str) -> tuple[ChatMessage, ...]:
    """What ``prompts`` records under ``template_id``: one copy for the whole step, not
    half a million nearly identical prompts."""
    return (
        ChatMessage("system", SYSTEM + "<the persona's background>"),
        ChatMessage(
            "user",
            "Round <n> of <steps>. You belong to the group <group>. "
            f"{tolerance}\n<your place and its neighbours by group>\n<offered empty places>\n"
            'Stay or move? Reply with JSON only: {"choice": "stay"} or {"choice": "<letter>"}',
        ),
    )


def parse_choice(text: str | None, offers: int) -> str | None:
    """``"stay"``, an offered letter, or None if the answer names neither."""
    if not text:
        return None
    allowed = {STAY, *LETTERS[:offers]}
    obj = extract_json_object(text)
    if obj is not None:
        choice = obj.get("choice")
        if not isinstance(choice, str):
            return None
        choice = choice.strip()
        choice = STAY if choice.lower() == STAY else choice.upper()
        return choice if choice in allowed else None
    for match in _WORD.finditer(_LABEL.sub("", text)):
        word = match.group(1)
        choice = STAY if word.lower() == STAY else word
        if choice in allowed and (choice == STAY or word.isupper()):
            return choice
    return None
