"""Model call metrics per model and endpoint: calls, in flight, tokens, latency quantiles,
errors by kind, retries. Cheap to update (a few integer adds and one bucket per call) and
read with ``snapshot()``, a plain dict ready for JSON.

Vocabulary (also in docs/models.md):

- a **request** is one ``complete()`` of the client the simulation holds; it ends in exactly
  one ``ChatResponse``: ``ok`` or ``failed`` (after retries, or a 4xx, or no live endpoint);
- a **call** is one HTTP attempt to one endpoint; a request makes 1 + retries calls;
- ``errors`` count failed calls by kind (``timeout``, ``connection``, ``429``, ``5xx``,
  ``4xx``, ``malformed``) plus ``unavailable`` (requests that found no live endpoint);
- ``retries`` count retried failures; per endpoint: retried failures that happened there;
- latency quantiles are over successful calls (time from sending to the answer): a
  different quantity from a round's decision latency (a merged call serves many
  decisions, a retried decision makes several calls, a cache hit makes none). The one
  definition of a run's p50/p95 is per decision, in metrics.jsonl
  (``ModelStepStats.latency_quantile_ms``), which the report reuses;
- ``cancelled`` counts calls whose caller went away (task cancelled) before an answer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from megasim.model.errors import ERROR_KINDS

_MIN_S = 1e-4  # bucket 0 holds everything up to 0.1 ms
_GROWTH = 1.02  # bucket width: quantiles are exact to within 2 %
_LOG_GROWTH = math.log(_GROWTH)
_BUCKETS = 1200  # 1e-4 * 1.02**1200 is about 2e6 s: every real latency fits


class LatencyHistogram:
    """Log-spaced latency buckets: constant memory, quantiles within 2 % relative error."""

    __slots__ = ("count", "counts", "max_s", "total_s")

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        if seconds <= _MIN_S:
            bucket = 0
        else:
            bucket = min(_BUCKETS, 1 + int(math.log(seconds / _MIN_S) / _LOG_GROWTH))
        self.counts[bucket] += 1
        self.count += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1): the upper edge of its bucket, at most the maximum."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                upper = _MIN_S * _GROWTH**bucket
                return min(upper, self.max_s)
        return self.max_s  # pragma: no cover - the loop always reaches rank


class CallStats:
    """Counters for one endpoint, or for a whole model."""

    __slots__ = (
        "calls",
        "cancelled",
        "errors",
        "in_flight",
        "latency",
        "ok",
        "retries",
        "tokens_in",
        "tokens_out",
    )

    def __init__(self) -> None:
        self.calls = 0
        self.ok = 0
        self.cancelled = 0
        self.in_flight = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.retries = 0
        self.errors: Counter[str] = Counter()
        self.latency = LatencyHistogram()

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ok": self.ok,
            "in_flight": self.in_flight,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_p50_s": self.latency.quantile(0.5),
            "latency_p95_s": self.latency.quantile(0.95),
            "errors": {kind: self.errors[kind] for kind in ERROR_KINDS if self.errors[kind]},
            "retries": self.retries,
            "cancelled": self.cancelled,
        }


class ModelMetrics:
    """Metrics of one named model: its calls in total and per endpoint, and its requests.

    Not thread-safe: one instance belongs to one event loop (one client)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.total = CallStats()
        self.endpoints: dict[str, CallStats] = {}
        self.requests = 0
        self.requests_ok = 0
        self.requests_failed = 0
        # per endpoint: what it takes (EndpointFeatures.snapshot), learned while running
        self.features: dict[str, Callable[[], dict[str, Any]]] = {}

    def endpoint(self, endpoint: str) -> CallStats:
        stats = self.endpoints.get(endpoint)
        if stats is None:
            stats = self.endpoints[endpoint] = CallStats()
        return stats

    def call_started(self, endpoint: str) -> None:
        stats = self.endpoint(endpoint)
        stats.calls += 1
        stats.in_flight += 1
        self.total.calls += 1
        self.total.in_flight += 1

    def call_ok(self, endpoint: str, latency_s: float, tokens_in: int, tokens_out: int) -> None:
        for stats in (self.endpoint(endpoint), self.total):
            stats.in_flight -= 1
            stats.ok += 1
            stats.tokens_in += tokens_in
            stats.tokens_out += tokens_out
            stats.latency.add(latency_s)

    def call_failed(self, endpoint: str, kind: str) -> None:
        for stats in (self.endpoint(endpoint), self.total):
            stats.in_flight -= 1
            stats.errors[kind] += 1

    def call_cancelled(self, endpoint: str) -> None:
        """The caller gave up (task cancelled): neither an answer nor an error."""
        for stats in (self.endpoint(endpoint), self.total):
            stats.in_flight -= 1
            stats.cancelled += 1

    def unavailable(self) -> None:
        """A request found no live endpoint in time (counted once, on the model)."""
        self.total.errors["unavailable"] += 1

    def retry(self, endpoint: str | None) -> None:
        """A failed call is being retried; ``endpoint``: where it failed, if known."""
        self.total.retries += 1
        if endpoint is not None:
            self.endpoint(endpoint).retries += 1

    def request_done(self, ok: bool) -> None:
        self.requests += 1
        if ok:
            self.requests_ok += 1
        else:
            self.requests_failed += 1

    def snapshot(self) -> dict[str, Any]:
        """Plain data: ``{model, requests, requests_ok, requests_failed, <CallStats>,
        endpoints: {url: <CallStats>}}``."""
        data: dict[str, Any] = {
            "model": self.model,
            "requests": self.requests,
            "requests_ok": self.requests_ok,
            "requests_failed": self.requests_failed,
        }
        data.update(self.total.snapshot())
        data["endpoints"] = {url: stats.snapshot() for url, stats in self.endpoints.items()}
        for url, features in self.features.items():
            data["endpoints"].setdefault(url, CallStats().snapshot())["features"] = features()
        return data
