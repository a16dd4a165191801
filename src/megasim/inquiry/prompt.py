"""The prompt an agent is asked with, and how its answer is read.

The agent answers in character: its persona, its background and what it remembers of
the run (its checkpointed state and its last decisions) go into the system message. A
survey asks for JSON (a schema where the server honours one) and the answer is still
checked: an option must be one of the options, a number must lie in the range.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from megasim.inquiry.base import Question
from megasim.model.base import ChatMessage
from megasim.model.parsing import parse_guess

_BOOKKEEPING = frozenset({"agent_id", "group", "model", "prompt_variant", "background"})
MAX_MEMORY = 8  # most recent decisions recalled in the prompt


@dataclass(frozen=True, slots=True)
class Reading:
    answer: str | None
    value: float | None
    valid: bool
    error: str | None


def describe_persona(persona: Mapping[str, Any]) -> str:
    parts = [
        f"{name.replace('_', ' ')}: {value}"
        for name, value in persona.items()
        if name not in _BOOKKEEPING and not name.startswith("background") and value is not None
    ]
    return "; ".join(parts) if parts else "no particular attributes"


def describe_memory(decisions: Sequence[Mapping[str, Any]], state: Mapping[str, Any] | None) -> str:
    lines = []
    for d in list(decisions)[-MAX_MEMORY:]:
        said = d.get("text")
        if said:
            lines.append(f"in step {d['step']} you said: {said}")
        elif d.get("value") is not None:
            lines.append(f"in step {d['step']} you answered {d['value']:g}")
        else:
            lines.append(f"in step {d['step']} you gave no usable answer")
    if state:
        lines.append("your notes: " + json.dumps(dict(state), default=str)[:600])
    return "; ".join(lines) if lines else "nothing yet"


def build_messages(
    question: Question,
    scenario: str,
    persona: Mapping[str, Any],
    decisions: Sequence[Mapping[str, Any]],
    state: Mapping[str, Any] | None,
) -> tuple[ChatMessage, ...]:
    background = persona.get("background")
    system = (
        f"You took part in a simulation study ({scenario.replace('_', ' ')}). An "
        "interviewer now asks you a question outside the study. Stay in character as "
        "this person and answer honestly and briefly.\n"
        f"Who you are: {describe_persona(persona)}.\n"
    )
    if isinstance(background, str) and background.strip():
        system += f"Your background: {background.strip()}\n"
    system += f"What you remember: {describe_memory(decisions, state)}."
    user = question.text.strip()
    if question.options:
        choices = "; ".join(question.options)
        user += f'\nChoose one of: {choices}.\nReply with JSON only: {{"answer": "<your choice>"}}'
    elif question.low is not None:
        user += (
            f"\nReply with JSON only: "
            f'{{"answer": <a number between {question.low:g} and {question.high:g}>}}'
        )
    return (ChatMessage("system", system), ChatMessage("user", user))


def answer_schema(question: Question) -> dict[str, Any] | None:
    if question.options:
        answer: dict[str, Any] = {"type": "string", "enum": list(question.options)}
    elif question.low is not None:
        answer = {"type": "number"}  # bounds are checked after parsing (servers ignore them)
    else:
        return None
    return {"type": "object", "properties": {"answer": answer}, "required": ["answer"]}


def read_answer(question: Question, text: str) -> Reading:
    """The answer in ``text``; an unusable one is invalid with its reason, never raised."""
    if question.low is not None and question.high is not None:
        parsed = parse_guess(text, question.low, question.high, field="answer")
        value = parsed.value if parsed.valid else None
        answer = f"{value:g}" if value is not None else None
        return Reading(answer, value, parsed.valid, None if parsed.valid else parsed.reason)
    if not question.options:
        stripped = text.strip()
        return Reading(stripped, None, bool(stripped), None if stripped else "empty answer")
    chosen = _option_in(question.options, text)
    if chosen is None:
        return Reading(None, None, False, f"not one of the options: {text[:80]!r}")
    return Reading(chosen, None, True, None)


def _option_in(options: Sequence[str], text: str) -> str | None:
    """The option ``text`` chose: a JSON ``answer`` must equal one (case aside); free text
    must name exactly one as a whole word ("not sure" is not "no")."""
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            loaded = json.loads(text[start : end + 1])
        except ValueError:
            loaded = None
        if isinstance(loaded, dict) and isinstance(loaded.get("answer"), str):
            answer = loaded["answer"].strip().strip(".").lower()
            return next((o for o in options if o.lower() == answer), None)
    lowered = text.strip().strip(".").lower()
    for option in options:
        if option.lower() == lowered:
            return option
    found = [o for o in options if re.search(rf"\b{re.escape(o)}\b", text, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None
