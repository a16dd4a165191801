"""Endpoint pool: one model name served by many OpenAI-compatible endpoints (vLLM replicas).

- **Balancing.** Each call goes to the live endpoint with the fewest calls in flight (ties
  round-robin), never beyond that endpoint's ``max_concurrency``; when every endpoint is
  full, callers wait in FIFO order and each freed slot goes straight to the oldest waiter.
  A faster endpoint frees its slots sooner, so it gets proportionally more calls.
- **Faults.** A call that fails raises the endpoint's ``EndpointError`` for the retry
  wrapper (``RetryingModel``), and the retry of that request prefers another endpoint.
  ``dead_after`` liveness failures in a row (timeouts, connection errors, 5xx, malformed
  answers) take an endpoint out of rotation; a background probe (``GET /health``; any
  answer below 500 counts) brings it back, backing off from ``probe_initial_s`` to
  ``probe_max_s``. A success of a call still in flight brings it back too. A 429 or 503
  with ``Retry-After`` keeps new calls off that endpoint for that long (at most
  ``max_retry_after_s``).
- **All dead.** Requests wait up to ``unavailable_timeout_s`` for an endpoint to come
  back, then end as an error response naming each endpoint's last error (not retried:
  the wait was the retry).

Every ``complete()`` ends in exactly one ``ChatResponse`` or one raised ``ModelError``
(which ``RetryingModel`` turns into one response). Single event loop, like every client.
The line of callers waiting for a slot, and their timeout while every endpoint is dead,
is ``pool_queue.WaitQueue``; an endpoint's spec and live state are ``endpoint.py``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from typing import Any, Literal

import httpx

from megasim.model.base import ChatRequest, ChatResponse, ModelError
from megasim.model.endpoint import Endpoint, EndpointSpec, health_url
from megasim.model.errors import LIVENESS_KINDS
from megasim.model.metrics import ModelMetrics
from megasim.model.openai_backend import OpenAIModel
from megasim.model.pool_queue import PoolUnavailableError, WaitQueue

_RETRY_MEMORY = 65_536  # requests remembered between a failed call and its retry


_REMOTE_PENALTY = 1 << 30  # a remote endpoint loses to any local one with a free slot


class EndpointPool:
    """A ``ModelClient`` over several endpoints serving the same model."""

    def __init__(
        self,
        name: str,
        endpoints: Sequence[EndpointSpec],
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        structured: bool = True,
        temperature: float = 1.0,
        max_tokens_cap: int | None = None,
        dead_after: int = 3,
        probe_initial_s: float = 0.5,
        probe_max_s: float = 10.0,
        unavailable_timeout_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        health_path: str = "/health",
        metrics: ModelMetrics | None = None,
        connections_per_client: int = 16,
        http_client: Literal["fast", "httpx"] = "httpx",
        local_node: str | frozenset[str] | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        urls = [spec.base_url.rstrip("/") for spec in endpoints]
        if len(set(urls)) != len(urls):
            raise ValueError(f"endpoints: duplicate base_url in {urls}")
        self.name = name
        self.immediate = False
        self.model = model
        self.dead_after = dead_after
        self.probe_initial_s = probe_initial_s
        self.probe_max_s = probe_max_s
        self.unavailable_timeout_s = unavailable_timeout_s
        self.max_retry_after_s = max_retry_after_s
        self.metrics = metrics if metrics is not None else ModelMetrics(name)
        self.endpoints: list[Endpoint] = []
        # names of the node this pool runs on (IP, Ray node id, its custom resources)
        local_names = {local_node} if isinstance(local_node, str) else set(local_node or ())
        for index, spec in enumerate(endpoints):
            client = OpenAIModel(
                name=name,
                base_url=spec.base_url,
                model=model,
                api_key_env=api_key_env,
                max_concurrency=spec.max_concurrency,
                timeout_s=timeout_s,
                structured=structured,
                temperature=temperature,
                max_tokens_cap=max_tokens_cap,
                metrics=self.metrics,
                connections_per_client=connections_per_client,
                http_client=http_client,
                max_n=spec.max_n,
            )
            endpoint = Endpoint(index, spec, client, health_url(spec.base_url, health_path))
            endpoint.local = spec.node is not None and spec.node in local_names
            self.endpoints.append(endpoint)
            self.metrics.endpoint(endpoint.base_url)  # listed in snapshots from the start
        self._http = httpx.AsyncClient(timeout=min(timeout_s, 5.0))
        self._queue = WaitQueue(
            self._pick, self._release, self._unavailable_reason, unavailable_timeout_s
        )
        self._rr = 0
        self._retrying: dict[int, tuple[ChatRequest, Endpoint]] = {}
        self._closed = False

    # -- the ModelClient protocol ---------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return (await self.complete_n(request, 1))[0]

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """One call (``n`` samples when merging) on the least-loaded live endpoint."""
        avoid = self._take_avoid(request) if self._retrying else None
        try:
            endpoint = await self._acquire(avoid)
        except PoolUnavailableError as exc:
            self.metrics.unavailable()
            return [ChatResponse(text="", model=self.name, error=str(exc))] * n
        try:
            response = await endpoint.client.complete_n(request, n)
        except ModelError as exc:
            self._on_failure(endpoint, exc)
            if len(self.endpoints) > 1:
                self._remember(request, endpoint)
            raise
        else:
            self._on_success(endpoint)
            return response
        finally:
            self._release(endpoint)

    @property
    def max_n(self) -> int:
        """The smallest endpoint limit: a merged call fits whichever endpoint takes it."""
        return min(e.client.max_n for e in self.endpoints)

    def metrics_snapshot(self) -> dict[str, Any]:
        """``ModelMetrics.snapshot()`` plus the pool's state: ``queued`` (requests waiting
        for a slot), ``alive_endpoints``, and per endpoint alive, slots, deaths, probes."""
        snapshot = self.metrics.snapshot()
        snapshot["queued"] = self._queue.pending()
        snapshot["alive_endpoints"] = sum(1 for e in self.endpoints if e.alive)
        for endpoint in self.endpoints:
            snapshot["endpoints"][endpoint.base_url].update(endpoint.state())
        return snapshot

    async def aclose(self) -> None:
        self._closed = True
        self._queue.close(f"model {self.name!r}: pool closed")
        probes = [e.probe for e in self.endpoints if e.probe is not None]
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        for endpoint in self.endpoints:
            endpoint.probe = None
            await endpoint.client.aclose()
        await self._http.aclose()

    # -- choosing an endpoint ---------------------------------------------------------

    def _pick(self, avoid: Endpoint | None) -> Endpoint | None:
        """The live, unthrottled endpoint with a free slot and the fewest calls in flight
        (ties: round-robin), preferring endpoints on this node (``local``: a shard pinned
        next to its node's model server calls it first); ``avoid`` only when no other one
        qualifies."""
        endpoints = self.endpoints
        count = len(endpoints)
        now = time.monotonic()
        best: Endpoint | None = None
        fallback: Endpoint | None = None
        best_load = math.inf
        start = self._rr
        for offset in range(count):
            endpoint = endpoints[(start + offset) % count]
            if (
                not endpoint.alive
                or endpoint.in_flight >= endpoint.max_concurrency
                or endpoint.throttled_until > now
            ):
                continue
            if endpoint is avoid:
                fallback = endpoint
                continue
            load = endpoint.in_flight + (0 if endpoint.local else _REMOTE_PENALTY)
            if load < best_load:
                best, best_load = endpoint, load
        if best is None:
            best = fallback
        if best is not None:
            self._rr = (best.index + 1) % count
        return best

    async def _acquire(self, avoid: Endpoint | None) -> Endpoint:
        if self._closed:
            raise PoolUnavailableError(f"model {self.name!r}: pool closed")
        if not self._queue:
            endpoint = self._pick(avoid)
            if endpoint is not None:
                endpoint.in_flight += 1
                return endpoint
        return await self._queue.wait(avoid)

    def _release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        if self._queue:
            self._queue.dispatch()

    # -- health ---------------------------------------------------------------------

    def _on_success(self, endpoint: Endpoint) -> None:
        endpoint.failures = 0
        if not endpoint.alive:
            self._revive(endpoint)

    def _on_failure(self, endpoint: Endpoint, error: ModelError) -> None:
        endpoint.last_error = str(error)[:200]
        after = getattr(error, "retry_after_s", None)
        if after is not None and after > 0:
            after = min(float(after), self.max_retry_after_s)  # a huge one must not park it
            until = time.monotonic() + after
            if until > endpoint.throttled_until:
                endpoint.throttled_until = until
                asyncio.get_running_loop().call_later(after, self._queue.dispatch)
        if getattr(error, "kind", "connection") in LIVENESS_KINDS:
            endpoint.failures += 1
            if endpoint.alive and endpoint.failures >= self.dead_after:
                self._mark_dead(endpoint)

    def _mark_dead(self, endpoint: Endpoint) -> None:
        endpoint.alive = False
        endpoint.deaths += 1
        if endpoint.probe is None and not self._closed:
            endpoint.probe = asyncio.get_running_loop().create_task(self._probe_loop(endpoint))
        if not any(e.alive for e in self.endpoints):
            self._queue.all_dead()

    def _revive(self, endpoint: Endpoint) -> None:
        endpoint.alive = True
        endpoint.failures = 0
        endpoint.revivals += 1
        probe, endpoint.probe = endpoint.probe, None
        if probe is not None and probe is not asyncio.current_task():
            probe.cancel()
        self._queue.revived()
        self._queue.dispatch()

    async def _probe_loop(self, endpoint: Endpoint) -> None:
        delay = self.probe_initial_s
        while not endpoint.alive:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            endpoint.probes += 1
            if await self._probe(endpoint):
                if not endpoint.alive:
                    self._revive(endpoint)
                return
            delay = min(delay * 2, self.probe_max_s)

    async def _probe(self, endpoint: Endpoint) -> bool:
        try:
            response = await self._http.get(endpoint.health_url)
        except (httpx.HTTPError, OSError) as exc:
            endpoint.last_error = f"health probe: {type(exc).__name__}: {exc}"[:200]
            return False
        return response.status_code < 500

    # -- every endpoint dead --------------------------------------------------------

    def _unavailable_reason(self) -> str:
        errors = "; ".join(f"{e.base_url}: {e.last_error}" for e in self.endpoints)
        return (
            f"no live endpoint for model {self.name!r} within "
            f"{self.unavailable_timeout_s:g} s ({errors})"
        )

    # -- retries prefer another endpoint ---------------------------------------------

    def _remember(self, request: ChatRequest, endpoint: Endpoint) -> None:
        retrying = self._retrying
        retrying[id(request)] = (request, endpoint)  # the request is held: its id stays unique
        if len(retrying) > _RETRY_MEMORY:
            del retrying[next(iter(retrying))]

    def _take_avoid(self, request: ChatRequest) -> Endpoint | None:
        entry = self._retrying.pop(id(request), None)
        if entry is None or entry[0] is not request:
            return None
        return entry[1]
