"""What the fake server answers: a chat completion whose numbers tests can predict.

The guess is a pure function of the request's seed and the choice index
(``fake_guess``), so a test knows each agent's answer without a model. Kept apart from
the server (``fake_server.py``: routing, faults, slots) because it is the one part a
test reads to check results.
"""

from __future__ import annotations

import json
import time
from typing import Any

from megasim.model.fake_quirks import Quirks, schema_answer
from megasim.seeding import mix64


def fake_guess(seed: int, index: int = 0) -> float:
    """The number the fake server answers for ``seed`` and choice ``index`` (0..100)."""
    return (mix64(seed * 1_000_003 + index) % 10_001) / 100


def count_tokens(text: str) -> int:
    """About four characters a token: close enough for usage accounting in tests."""
    return max(1, len(text) // 4)


def completion_body(
    body: dict[str, Any], seed: int, quirks: Quirks, model: str, request_number: int
) -> bytes:
    """The JSON of a chat completion for ``body``: ``n`` choices (as ``quirks`` allow),
    ``{"guess": ...}`` under a honoured ``response_format``, else prose, and usage."""
    n = quirks.choices(body)
    structured = quirks.structured(body)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 1 << 30
    choices = []
    completion_tokens = 0
    for index in range(int(n)):
        guess = fake_guess(seed, index)
        content = schema_answer(body, guess) if structured else f"My guess is {guess}."
        completion_tokens += min(count_tokens(content), int(max_tokens))
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        )
    prompt_tokens = sum(
        count_tokens(str(m.get("content", ""))) + 3 for m in body["messages"] if isinstance(m, dict)
    )
    answer = {
        "id": f"chatcmpl-fake-{request_number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or model),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return json.dumps(answer).encode()
