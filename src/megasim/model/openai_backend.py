"""OpenAI-compatible backend (vLLM, Ollama, llama-server, OpenAI, DashScope), async."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import openai

from megasim.model.base import ChatRequest, ChatResponse, ModelError
from megasim.model.local import chat_body

_RETRYABLE = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)


class OpenAIModel:
    """Talks to one endpoint with at most ``max_concurrency`` requests in flight."""

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        structured: bool = True,
        temperature: float = 1.0,
        max_tokens_cap: int | None = None,
    ) -> None:
        self.name = name
        self.immediate = False
        self.temperature = temperature
        self.max_tokens_cap = max_tokens_cap
        self.model = model
        self.structured = structured
        api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",  # local servers ignore the key
            timeout=timeout_s,
            max_retries=0,  # megasim's retry wrapper owns retries and their accounting
        )
        self._slots = asyncio.Semaphore(max_concurrency)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        body: dict[str, Any] = chat_body(
            request, self.structured, self.temperature, self.max_tokens_cap
        )
        started = time.perf_counter()
        try:
            async with self._slots:
                result = await self._client.chat.completions.create(model=self.model, **body)
        except _RETRYABLE as exc:
            raise ModelError(f"{type(exc).__name__}: {exc}") from exc
        except openai.APIStatusError as exc:  # 4xx other than 429: retrying will not help
            return ChatResponse(
                text="",
                model=self.name,
                latency_s=time.perf_counter() - started,
                error=f"HTTP {exc.status_code}: {exc.message}",
            )
        if not result.choices:
            raise ModelError("response without choices")
        usage = result.usage
        return ChatResponse(
            text=result.choices[0].message.content or "",
            model=self.name,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        await self._client.close()
