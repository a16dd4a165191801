"""What one endpoint accepts, learned while a run goes on.

OpenAI-compatible servers differ on the optional fields of a chat completion: llama.cpp's
server rejects ``n`` above its parallel slots (HTTP 400), Ollama answers one choice
whatever ``n`` says, some servers reject ``seed`` or ``response_format``, newer OpenAI
models reject ``max_tokens`` for ``max_completion_tokens``. A call the server cannot take
must never cost a decision, so each endpoint keeps an ``EndpointFeatures``: the largest
``n`` it takes (configured, then lowered by what the server says) and which optional
fields are still sent. A 4xx that blames one of them steps that field down a ladder and
the call is sent again; what was learned is kept for the rest of the run and reported in
the model metrics (``features`` per endpoint in ``metrics.jsonl``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

FieldName = Literal["n", "seed", "response_format", "max_tokens"]
ResponseFormat = Literal["json_schema", "json_object", "none"]
MaxTokensField = Literal["max_tokens", "max_completion_tokens", "none"]

_MAX_NOTES = 20
# "1 <= value <= 2" (llama.cpp), "a value <= 128" (OpenAI), "at most 4", "[1, 4]"
_N_LIMIT = re.compile(
    r"(?:<=|≤|at most|no more than|maximum(?: value)?(?: is| of)?|up to|\[\s*1\s*,)\s*(\d+)",
    re.IGNORECASE,
)
_N_WORD = re.compile(r"(?<![\w-])['\"`]?n['\"`]?(?![\w-])")
_FORMAT_WORDS = ("response_format", "json_schema", "json schema", "grammar", "schema")


def blamed_field(message: str, body: Mapping[str, Any]) -> FieldName | None:
    """The optional field of ``body`` that a 4xx ``message`` rejects, if any.

    Only fields the body carried can be blamed, so an unrelated 400 (a prompt longer than
    the context) is never mistaken for one."""
    text = message.lower()
    if "response_format" in body and any(word in text for word in _FORMAT_WORDS):
        return "response_format"
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body and name in text:
            return "max_tokens"
    if "seed" in body and "seed" in text:
        return "seed"
    if int(body.get("n") or 1) > 1 and _N_WORD.search(message):
        return "n"
    return None


def parse_n_limit(message: str) -> int | None:
    """The largest ``n`` a rejection names (``... <= 4 ...``), or None."""
    found = [int(m.group(1)) for m in _N_LIMIT.finditer(message)]
    found = [value for value in found if value >= 1]
    return max(found) if found else None


class EndpointFeatures:
    """The optional request fields one endpoint takes; single event loop, like its client."""

    def __init__(self, max_n: int = 64) -> None:
        if max_n < 1:
            raise ValueError(f"max_n must be at least 1, got {max_n}")
        self.configured_max_n = max_n
        self.max_n = max_n
        self.n_ignored = False  # answered one choice when asked for more
        self.seed = True
        self.response_format: ResponseFormat = "json_schema"
        self.max_tokens_field: MaxTokensField = "max_tokens"
        self.notes: list[str] = []

    # -- building requests -------------------------------------------------------------

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` (as ``chat_body`` builds it) with the fields this endpoint takes."""
        if not self.seed:
            body.pop("seed", None)
        if "response_format" in body:
            if self.response_format == "json_object":
                body["response_format"] = {"type": "json_object"}
            elif self.response_format == "none":
                del body["response_format"]
        if "max_tokens" in body and self.max_tokens_field != "max_tokens":
            value = body.pop("max_tokens")
            if self.max_tokens_field == "max_completion_tokens":
                body["max_completion_tokens"] = value
        return body

    # -- learning ------------------------------------------------------------------

    def on_rejection(self, body: Mapping[str, Any], status: int, message: str) -> bool:
        """A 4xx answered ``body``. True when it blamed an optional field, which is now
        stepped down (or already was, by another call): send the request again."""
        field = blamed_field(message, body)
        if field is None:
            return False
        reason = f"HTTP {status}: {message[:160]}"
        if field == "n":
            asked = int(body.get("n") or 1)
            limit = parse_n_limit(message)
            if limit is None or limit >= asked:
                limit = max(1, asked // 2)
            self.lower_n(limit, f"n={asked} rejected ({reason})")
        elif field == "seed":
            if self.seed:
                self.seed = False
                self._note(f"seed dropped ({reason})")
        elif field == "response_format":
            sent = body.get("response_format")
            sent_type = sent.get("type") if isinstance(sent, Mapping) else None
            if sent_type == "json_schema" and self.response_format == "json_schema":
                self.response_format = "json_object"
                self._note(f"response_format json_schema -> json_object ({reason})")
            elif sent_type == "json_object" and self.response_format != "none":
                self.response_format = "none"
                self._note(f"response_format dropped ({reason})")
        elif "max_tokens" in body and self.max_tokens_field == "max_tokens":
            self.max_tokens_field = "max_completion_tokens"
            self._note(f"max_tokens -> max_completion_tokens ({reason})")
        elif "max_completion_tokens" in body and self.max_tokens_field != "none":
            self.max_tokens_field = "none"
            self._note(f"max_completion_tokens dropped ({reason})")
        return True

    def on_choices(self, asked: int, got: int) -> None:
        """An answer had ``got`` choices for ``asked`` (fewer): the server caps or ignores
        ``n``; the missing samples are asked again, at most ``got`` per call."""
        if got >= asked or got < 1:
            return
        if got == 1:
            self.n_ignored = True
        self.lower_n(got, f"asked n={asked}, answered {got} choice(s)")

    def lower_n(self, limit: int, why: str) -> None:
        limit = max(1, limit)
        if limit < self.max_n:
            self.max_n = limit
            self._note(f"max_n {limit}: {why}")

    def _note(self, note: str) -> None:
        if len(self.notes) < _MAX_NOTES:
            self.notes.append(note)

    def snapshot(self) -> dict[str, Any]:
        """What is sent now and why (plain data for metrics and preflight files)."""
        return {
            "max_n": self.max_n,
            "configured_max_n": self.configured_max_n,
            "n_ignored": self.n_ignored,
            "seed": "sent" if self.seed else "dropped",
            "response_format": self.response_format,
            "max_tokens_field": self.max_tokens_field,
            "learned": list(self.notes),
        }
