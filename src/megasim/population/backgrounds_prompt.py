"""The background prompt: which columns describe a person, what we ask for, what comes back.

One call per agent. The request carries a JSON schema (llama.cpp and OpenAI-compatible
servers then constrain decoding to it), and the composed ``background`` text is what the
game's P5 prompt reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from megasim.model.base import ChatMessage

BACKGROUND_COLUMNS: tuple[str, ...] = (
    "background",
    "background_json",
    "background_status",
    "background_error",
    "background_model",
    "background_attempts",
)
"""The columns the pipeline writes, in output order."""

_BOOKKEEPING = frozenset({"agent_id", "group", "model", "prompt_variant"})

MAX_NAME = 80
MAX_PERSONALITY = 300
MAX_STORY = 900
MAX_TOKENS = 384
"""Completion budget per call: the schema's string limits fit in about 350 tokens."""

SYSTEM_PROMPT = (
    "You write short, realistic life stories of people for a social simulation. "
    "Reply with one JSON object only."
)


def attribute_columns(column_names: Sequence[str]) -> list[str]:
    """Columns that describe who an agent is: everything but bookkeeping and background*."""
    return [
        name
        for name in column_names
        if name not in _BOOKKEEPING and not name.startswith("background")
    ]


def stated_age(attributes: Mapping[str, Any]) -> int | None:
    """The row's age as a whole number of years, when it has a usable one."""
    age = attributes.get("age")
    if isinstance(age, bool) or not isinstance(age, int | float):
        return None
    if isinstance(age, float) and not math.isfinite(age):
        return None
    return round(age)


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def describe_attributes(attributes: Mapping[str, Any]) -> str:
    """One ``- name: value`` line per known attribute (unknown values are left out)."""
    lines = [
        f"- {name.replace('_', ' ')}: {_value_text(value)}"
        for name, value in attributes.items()
        if value is not None
    ]
    return "\n".join(lines) if lines else "- (no attributes given)"


def background_schema(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema for one agent; ``age`` is asked for (and bounded) only if it has one."""
    properties: dict[str, Any] = {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
        "personality": {"type": "string", "minLength": 1, "maxLength": MAX_PERSONALITY},
        "story": {"type": "string", "minLength": 1, "maxLength": MAX_STORY},
    }
    required = ["name", "personality", "story"]
    age = stated_age(attributes)
    if age is not None:
        properties["age"] = {"type": "integer", "minimum": age - 1, "maximum": age + 1}
        required.append("age")
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def background_messages(attributes: Mapping[str, Any]) -> tuple[ChatMessage, ...]:
    """System + user turn asking for the person's name, personality and a 2-4 sentence story."""
    age = stated_age(attributes)
    fields = [
        '"name": a full name',
        '"personality": a few personality traits',
        '"story": a short life story of 2-4 sentences in the third person, consistent '
        "with every attribute above",
    ]
    if age is not None:
        fields.append(f'"age": {age}')
    user = (
        "Write the background of this person:\n"
        f"{describe_attributes(attributes)}\n\n"
        "Reply as JSON with these fields:\n" + ",\n".join(fields)
    )
    return (ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", user))


def compose_background(name: str, personality: str, story: str) -> str:
    """The single string the P5 prompt uses: ``Name: … Personality: … Story: …``."""

    def sentence(text: str) -> str:
        text = " ".join(text.split())
        return text if text.endswith((".", "!", "?")) else text + "."

    return f"Name: {sentence(name)} Personality: {sentence(personality)} Story: {sentence(story)}"


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Rough prompt size: ~4 characters per token plus the chat template's overhead."""
    return sum(len(m.content) for m in messages) // 4 + 10 * len(messages)
