"""Behaviours of real OpenAI-compatible servers that the fake server can reproduce.

Each mode copies what a server users run does (see docs/models.md, "What each server
accepts"), so the model layer is tested against it without that server:

- ``max_n``: ``n`` above it is rejected with HTTP 400, in llama.cpp's words
  (``Field 'n': Value must be between 1 <= value <= 4, but got 20``); with
  ``n_limit_in_message=False`` the message names no limit (the client must search).
- ``ignore_n``: one choice whatever ``n`` asks (Ollama's OpenAI-compatible API).
- ``response_format``: ``honour`` | ``ignore`` (prose anyway) | ``reject_schema``
  (400 for ``json_schema``, ``json_object`` accepted) | ``reject`` (400 for any).
- ``seed``: ``honour`` | ``ignore`` (answers vary anyway) | ``reject`` (400, as Azure's
  ``Unrecognized request argument supplied: seed``).
- ``max_tokens``: ``honour`` | ``reject`` (400, as OpenAI's reasoning models: use
  ``max_completion_tokens``).
- ``strict_model``: an unknown model name gets 404 (vLLM, OpenAI); llama.cpp's server
  answers any name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

FormatMode = Literal["honour", "ignore", "reject_schema", "reject"]
SeedMode = Literal["honour", "ignore", "reject"]
MaxTokensMode = Literal["honour", "reject"]


@dataclass(slots=True)
class Quirks:
    """What the fake server accepts; the defaults accept everything (vLLM-like)."""

    max_n: int | None = None
    n_limit_in_message: bool = True
    ignore_n: bool = False
    response_format: FormatMode = "honour"
    seed: SeedMode = "honour"
    max_tokens: MaxTokensMode = "honour"
    strict_model: bool = False

    def rejection(self, body: dict[str, Any], served: str) -> tuple[int, str] | None:
        """``(status, message)`` when this server refuses ``body``, else None."""
        model = body.get("model")
        if self.strict_model and model is not None and model != served:
            return 404, f"The model `{model}` does not exist."
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            return 400, f"Field 'n': Value must be an integer >= 1, but got {n!r}"
        if self.max_n is not None and n > self.max_n and not self.ignore_n:
            if self.n_limit_in_message:
                return (
                    400,
                    f"Field 'n': Value must be between 1 <= value <= {self.max_n}, but got {n}",
                )
            return 400, "Invalid value for 'n': too many choices requested for this model."
        fmt = body.get("response_format")
        if isinstance(fmt, dict):
            kind = fmt.get("type")
            if self.response_format == "reject" or (
                self.response_format == "reject_schema" and kind == "json_schema"
            ):
                return (
                    400,
                    f"Invalid parameter: 'response_format' of type '{kind}' is not supported.",
                )
        if self.seed == "reject" and "seed" in body:
            return 400, "Unrecognized request argument supplied: seed"
        if self.max_tokens == "reject" and "max_tokens" in body:
            return 400, (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            )
        return None

    def choices(self, body: dict[str, Any]) -> int:
        """How many choices to answer."""
        return 1 if self.ignore_n else int(body.get("n") or 1)

    def structured(self, body: dict[str, Any]) -> bool:
        """Whether the answer is JSON (asked for and honoured)."""
        return body.get("response_format") is not None and self.response_format != "ignore"

    def uses_seed(self) -> bool:
        return self.seed == "honour"


def schema_answer(body: dict[str, Any], guess: float) -> str:
    """A JSON answer shaped by the request's schema (numbers get ``guess``, booleans
    true, strings "ok"); ``{"guess": ...}`` without a schema (``json_object``)."""
    fmt = body.get("response_format")
    spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return json.dumps({"guess": guess})
    answer: dict[str, Any] = {}
    for name, prop in properties.items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        answer[name] = True if kind == "boolean" else "ok" if kind == "string" else guess
    return json.dumps(answer)
