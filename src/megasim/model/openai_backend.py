"""OpenAI-compatible backend (vLLM, Ollama, llama-server, OpenAI, DashScope), async.

One ``OpenAIModel`` talks to one endpoint; ``megasim.model.pool.EndpointPool`` spreads one
model over several. Failures are raised as ``EndpointError`` with their kind (timeout,
connection, 429, 5xx, malformed) and the server's ``Retry-After``, for the retry wrapper;
a 4xx other than 429 is answered as an error response (retrying cannot help).

Connections: ``http://`` endpoints use ``FastHTTPTransport`` (megasim.model.transport)
under the openai client, O(1) per call. ``https://`` endpoints (or ``http_client="httpx"``)
use httpx's own pool, which scans every pooled connection on each request (more than half
of the client's 3.5 ms of CPU per call at 256 connections). So there a high
``max_concurrency`` is split over several HTTP clients of at most
``connections_per_client`` connections each (picked least-loaded), each sized to its share
so that no connection is ever opened and dropped for want of a keep-alive slot.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from typing import Any, Literal

import httpx2
import openai

from megasim.model.base import ChatRequest, ChatResponse, ModelSetupError
from megasim.model.errors import EndpointError, ErrorKind, parse_retry_after
from megasim.model.features import EndpointFeatures
from megasim.model.metrics import ModelMetrics
from megasim.model.transport import FastHTTPTransport
from megasim.model.wire import chat_body, fan_out
from megasim.seeding import mix64


class MalformedResponseError(ValueError):
    """A 2xx answer that is not a chat completion."""


_MAX_ROUNDS = 16  # rounds of re-asking within one complete_n (each teaches features)
_MALFORMED = (ValueError,)  # JSONDecodeError and UnicodeDecodeError are ValueErrors


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _parse_completion(content: bytes) -> tuple[str, int, int]:
    """``(text of the first choice, prompt tokens, completion tokens)`` of a chat completion
    body; MalformedResponseError (or JSONDecodeError) when it is not one."""
    texts, tokens_in, tokens_out, _ = _parse_choices(content)
    return texts[0], tokens_in, tokens_out


def _chunks(total: int, size: int) -> list[int]:
    """``total`` samples in calls of at most ``size``: 10, 4 -> [4, 4, 2]."""
    size = max(1, size)
    return [min(size, total - start) for start in range(0, total, size)]


def _with_latency(response: ChatResponse, latency_s: float) -> ChatResponse:
    response.latency_s = latency_s
    return response


def _parse_choices(content: bytes) -> tuple[list[str], int, int, int]:
    """Texts of every choice (in ``index`` order), prompt, completion and cached prompt
    tokens (``usage.prompt_tokens_details.cached_tokens``: vLLM, OpenAI, llama.cpp)."""
    data = json.loads(content)
    if not isinstance(data, dict):
        raise MalformedResponseError(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError("no choices")
    texts: list[str] = []
    ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    for choice in ordered:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise MalformedResponseError("a choice has no message")
        text = message.get("content")
        if text is not None and not isinstance(text, str):
            raise MalformedResponseError(f"content is {type(text).__name__}, not text")
        texts.append(text or "")
    usage = data.get("usage")
    tokens_in = tokens_out = cached = 0
    if isinstance(usage, dict):
        tokens_in = _count(usage.get("prompt_tokens"))
        tokens_out = _count(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            cached = _count(details.get("cached_tokens"))
    return texts, tokens_in, tokens_out, cached


def resolve_api_key(name: str, api_key_env: str | None) -> str:
    """The key from ``api_key_env``; "" for a keyless endpoint (``api_key_env: null``).

    A named variable that is unset or empty is a setup error, not a silent dummy key: the
    run would otherwise fail every call with 401 (and a paid API bill nothing useful)."""
    if not api_key_env:
        return ""
    key = os.environ.get(api_key_env, "")
    if not key:
        raise ModelSetupError(
            f"model {name!r}: environment variable {api_key_env} (api_key_env) is not set; "
            f"export it with the endpoint's API key, or declare a server that needs no key "
            f"with `api_key_env: null`"
        )
    return key


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
        metrics: ModelMetrics | None = None,
        connections_per_client: int = 16,
        http_client: Literal["fast", "httpx"] = "httpx",
        max_n: int = 64,
    ) -> None:
        self.name = name
        self.immediate = False
        self.temperature = temperature
        self.max_tokens_cap = max_tokens_cap
        self.model = model
        self.structured = structured
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.metrics = metrics if metrics is not None else ModelMetrics(name)
        self.features = EndpointFeatures(max_n)
        self.metrics.features[self.base_url] = self.features.snapshot
        api_key = resolve_api_key(name, api_key_env)
        fast = http_client == "fast" and self.base_url.startswith("http://")
        if fast:
            shards = 1
            http_clients = [
                openai.DefaultAsyncHttpxClient(
                    transport=FastHTTPTransport(max_connections=max_concurrency)
                )
            ]
        else:
            shards = max(1, math.ceil(max_concurrency / max(1, connections_per_client)))
            per_client = math.ceil(max_concurrency / shards)
            limits = httpx2.Limits(max_connections=per_client, max_keepalive_connections=per_client)
            http_clients = [openai.DefaultAsyncHttpxClient(limits=limits) for _ in range(shards)]
        self._clients = [
            openai.AsyncOpenAI(
                base_url=base_url,
                api_key=api_key or "not-needed",  # keyless (api_key_env: null) servers
                timeout=timeout_s,
                max_retries=0,  # megasim's retry wrapper owns retries and their accounting
                http_client=http_client_,
            )
            for http_client_ in http_clients
        ]
        self._load = [0] * shards
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def max_n(self) -> int:
        """Samples per call this endpoint takes (configured, lowered as it is learned)."""
        return self.features.max_n

    @property
    def _client(self) -> openai.AsyncOpenAI:
        """The first HTTP client (all share base URL, key, timeout and retry settings)."""
        return self._clients[0]

    @property
    def in_flight(self) -> int:
        return sum(self._load)

    def _fail(self, kind: ErrorKind, message: str, **extra: Any) -> EndpointError:
        self.metrics.call_failed(self.base_url, kind)
        return EndpointError(message, kind=kind, endpoint=self.base_url, **extra)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return (await self.complete_n(request, 1))[0]

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """``n`` samples of one request (merging), in as few calls as the server takes.

        Calls carry at most ``features.max_n`` samples each (sent together). A 4xx that
        rejects ``n`` or another optional field, or an answer with fewer choices than
        asked, teaches ``features`` and the missing samples are asked again, so no sample
        is lost to what the server cannot do. Samples of later calls get seeds derived
        from the request's (the same seed would repeat the same sample)."""
        started = time.perf_counter()
        texts: list[str] = []
        failed: list[ChatResponse] = []
        usage = [0, 0, 0]  # prompt, completion, cached prompt tokens over every call
        for _ in range(_MAX_ROUNDS):
            remaining = n - len(texts) - len(failed)
            if remaining <= 0:
                break
            offset, calls = len(texts), []
            sizes = _chunks(remaining, self.features.max_n)
            for size in sizes:
                calls.append(self._call(request, size, offset))
                offset += size
            results = await asyncio.gather(*calls, return_exceptions=True)
            for size, result in zip(sizes, results, strict=True):
                if isinstance(result, BaseException):
                    raise result  # retryable (EndpointError) or a bug; retried as a whole
                if isinstance(result, ChatResponse):
                    failed.extend([result] * size)
                    continue
                if result is None:
                    continue  # a field was stepped down: asked again next round
                texts.extend(result[0])
                for i in range(3):
                    usage[i] += result[i + 1]  # type: ignore[operator]
        else:
            remaining = n - len(texts) - len(failed)
            reason = f"the server kept rejecting optional fields: {self.features.snapshot()}"
            failed.extend(self._rejection(reason, started) for _ in range(remaining))
        latency = time.perf_counter() - started
        answered = fan_out(texts, self.name, usage[0], usage[1], latency, usage[2]) if texts else []
        return (answered + [_with_latency(r, latency) for r in failed])[:n]

    async def _call(
        self, request: ChatRequest, k: int, offset: int
    ) -> tuple[list[str], int, int, int] | ChatResponse | None:
        """One HTTP call for ``k`` samples: ``(texts, prompt, completion, cached tokens)``;
        a ``ChatResponse`` error for a 4xx that no fallback helps (once per sample); None
        when the 4xx taught ``features`` something (ask again). Retryable failures raise
        ``EndpointError``."""
        body: dict[str, Any] = chat_body(
            request, self.structured, self.temperature, self.max_tokens_cap
        )
        body["model"] = self.model
        if k > 1:
            body["n"] = k
        if offset and isinstance(body.get("seed"), int):
            body["seed"] = mix64(body["seed"] + offset) >> 1  # an independent sample
        self.features.apply(body)
        async with self._slots:
            load = self._load
            shard = load.index(min(load)) if len(load) > 1 else 0
            load[shard] += 1
            self.metrics.call_started(self.base_url)
            started = time.perf_counter()
            try:
                # client.post (the SDK's documented way to call any endpoint) sends the body
                # as is: chat.completions.create() would first walk every message and JSON
                # schema through its type transformer (a third of the client's CPU time)
                raw = await self._clients[shard].post(
                    "/chat/completions", body=body, cast_to=httpx2.Response
                )
                latency = time.perf_counter() - started
                texts, tokens_in, tokens_out, cached = _parse_choices(raw.content)
            except openai.APITimeoutError as exc:  # before APIConnectionError: a subclass
                raise self._fail("timeout", f"{type(exc).__name__}: {exc}") from exc
            except openai.APIConnectionError as exc:
                raise self._fail("connection", f"{type(exc).__name__}: {exc}") from exc
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = f"{type(exc).__name__}: {exc}"
                if status == 429 or status >= 500:
                    kind: ErrorKind = "429" if status == 429 else "5xx"
                    after = parse_retry_after(exc.response.headers)
                    raise self._fail(kind, message, status=status, retry_after_s=after) from exc
                # 4xx other than 429: a field the server does not take, or hopeless
                self.metrics.call_failed(self.base_url, "4xx")
                if self.features.on_rejection(body, status, str(exc.message)):
                    return None
                return self._rejection(f"HTTP {status}: {exc.message}", started)
            except _MALFORMED as exc:
                reason = f"malformed response: {type(exc).__name__}: {exc}"
                raise self._fail("malformed", reason) from exc
            except asyncio.CancelledError:
                self.metrics.call_cancelled(self.base_url)
                raise
            except Exception:  # a bug, not a server fault: propagates, but is counted
                self.metrics.call_failed(self.base_url, "other")
                raise
            finally:
                load[shard] -= 1
        self.metrics.call_ok(self.base_url, latency, tokens_in, tokens_out)
        if len(texts) < k:
            self.features.on_choices(k, len(texts))
        return texts[:k], tokens_in, tokens_out, cached

    def _rejection(self, reason: str, started: float) -> ChatResponse:
        latency = time.perf_counter() - started
        return ChatResponse(text="", model=self.name, latency_s=latency, error=reason)

    def metrics_snapshot(self) -> dict[str, Any]:
        return self.metrics.snapshot()

    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()
