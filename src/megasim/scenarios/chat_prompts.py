"""Prompts and answer parsing of the chat-room opinion scenario.

One call per agent and step asks for structured output: the agent's opinion on the
statement (a number on the agreement scale) and one short message to its room.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from megasim.env.chatroom import ChatObservation
from megasim.model.base import ChatMessage
from megasim.model.parsing import extract_json_object
from megasim.scenarios.guess_prompts import Prompt

MAX_MESSAGE_CHARS = 280
OPINION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "opinion": {"type": "number"},
        "message": {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
    },
    "required": ["opinion", "message"],
}
_LABEL = re.compile(r"^\s*\[[\w-]+\]\s*")  # a stand-in's label such as "[surrogate]"


def room_block(obs: ChatObservation) -> str:
    """The part of the prompt every member of a room shares this step."""
    lines = [
        f'Statement: "{obs.statement}"',
        f"Scale: {obs.low:g} = strongly disagree, {obs.high:g} = strongly agree.",
        f"This is round {obs.step} of {obs.steps} of the discussion in your room "
        f"({obs.members} people).",
    ]
    if obs.recent:
        lines.append("Recent messages in your room, oldest first:")
        lines.extend(f"- person {p.agent} (opinion {p.opinion:g}): {p.text}" for p in obs.recent)
    else:
        lines.append("Nobody has said anything yet.")
    return "\n".join(lines)


def build_chat_prompt(
    shared: str, own: float, background: str, max_tokens: int, obs: ChatObservation
) -> Prompt:
    system = f"You are a person taking part in a group discussion. Your background: {background}"
    user = (
        f"{shared}\nYour opinion so far: {own:g}.\n"
        "Read the messages, decide what you now think, and say one short sentence to the "
        f'room. Reply with JSON only: {{"opinion": <a number between {obs.low:g} and '
        f'{obs.high:g}>, "message": "<one sentence>"}}'
    )
    messages = (ChatMessage("system", system), ChatMessage("user", user))
    digest = hashlib.blake2b(shared.encode(), digest_size=6).hexdigest()
    return Prompt(messages, f"chat-{digest}", OPINION_SCHEMA, max_tokens)


def parse_message(text: str | None) -> str | None:
    """The ``message`` of a JSON answer, else the answer's own words; None if empty."""
    if not text:
        return None
    obj = extract_json_object(text)
    if obj is not None:
        message = obj.get("message")
        if isinstance(message, str) and message.strip():
            return message.strip()[:MAX_MESSAGE_CHARS]
        return None
    words = _LABEL.sub("", text).strip()
    return words[:MAX_MESSAGE_CHARS] or None
