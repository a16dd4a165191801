"""One endpoint of a pool: its configuration (``EndpointSpec``) and live state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from megasim.model.openai_backend import OpenAIModel


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One endpoint: an OpenAI-compatible base URL and its concurrency cap."""

    base_url: str
    max_concurrency: int = 16
    node: str | None = None  # IP of the machine serving it: agents on that node prefer it
    max_n: int = 64  # samples per call at most (lowered as the server teaches it)


def health_url(base_url: str, health_path: str = "/health") -> str:
    """``http://h:8000/v1`` -> ``http://h:8000/health`` (vLLM and llama-server serve it at
    the root); a base URL without a trailing ``/v1`` gets the path appended."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/" + health_path.lstrip("/")


class Endpoint:
    """The live state of one endpoint in a pool."""

    def __init__(self, index: int, spec: EndpointSpec, client: OpenAIModel, health: str) -> None:
        self.index = index
        self.base_url = client.base_url
        self.max_concurrency = spec.max_concurrency
        self.node = spec.node
        self.local = False  # serves the node this pool runs on (set by the pool)
        self.client = client
        self.health_url = health
        self.in_flight = 0
        self.alive = True
        self.failures = 0  # liveness failures in a row
        self.throttled_until = 0.0  # time.monotonic() before which no new call is sent
        self.last_error: str | None = None
        self.deaths = 0
        self.revivals = 0
        self.probes = 0
        self.probe: asyncio.Task[None] | None = None

    def state(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "max_concurrency": self.max_concurrency,
            "slots_in_use": self.in_flight,
            "throttled_s": max(0.0, self.throttled_until - time.monotonic()),
            "deaths": self.deaths,
            "revivals": self.revivals,
            "probes": self.probes,
            "last_error": self.last_error,
        }
