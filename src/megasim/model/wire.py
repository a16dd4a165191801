"""The chat-completion wire format, shared by every backend that speaks it.

llama.cpp in-process (``local``) and OpenAI-compatible servers (``openai``) take the same
request body and answer a call with ``n`` choices; the merge wrapper hands those choices
to its members. These pure helpers live here, below all three, so that no backend imports
another backend or a wrapper.
"""

from __future__ import annotations

from typing import Any

from megasim.model.base import ChatRequest, ChatResponse


def chat_body(
    request: ChatRequest,
    structured: bool,
    temperature: float = 1.0,
    max_tokens_cap: int | None = None,
) -> dict[str, Any]:
    """The OpenAI-style chat completion body (llama.cpp and OpenAI-compatible servers)."""
    max_tokens = request.max_tokens
    if max_tokens_cap is not None:
        max_tokens = min(max_tokens, max_tokens_cap)
    body: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": max_tokens,
        "temperature": temperature if request.temperature is None else request.temperature,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if structured and request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": request.json_schema},
        }
    return body


def fan_out(
    texts: list[str],
    model: str,
    tokens_in: int,
    tokens_out: int,
    latency_s: float,
    tokens_cached: int = 0,
) -> list[ChatResponse]:
    """One response per choice of a call: prompt tokens on the first, completion tokens
    split evenly (remainder on the first), so the members' sums equal the call's usage."""
    n = max(1, len(texts))
    share, rest = divmod(tokens_out, n)
    return [
        ChatResponse(
            text=text,
            model=model,
            tokens_in=tokens_in if i == 0 else 0,
            tokens_out=share + (rest if i == 0 else 0),
            latency_s=latency_s,
            tokens_cached=tokens_cached if i == 0 else 0,
        )
        for i, text in enumerate(texts)
    ]
