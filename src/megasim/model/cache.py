"""Opt-in response cache in an embedded database (SQLite), for replaying runs.

Keyed by a hash of the model name and everything that determines the answer (messages,
max tokens, temperature, schema, seed) plus a sample index; requests carry per-agent
seeds, so a rerun with the same run seed hits for every agent and calls no model.
Failed calls are not cached. Safe for several processes on one machine (SQLite locking;
WAL journal), e.g. Ray shards on a node sharing one cache file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megasim.model.base import ChatRequest, ChatResponse, ModelClient

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT NOT NULL,
    sample INTEGER NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    PRIMARY KEY (key, sample)
)
"""


def request_key(model: str, request: ChatRequest, fingerprint: str = "") -> str:
    """``fingerprint`` identifies the model behind the name (its resolved config: file or
    URL, configured temperature, token cap), so changing the model invalidates the cache."""
    payload = [
        model,
        fingerprint,
        [(m.role, m.content) for m in request.messages],
        request.max_tokens,
        request.temperature,
        request.seed,
        request.json_schema,
    ]
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    stored: int = 0


class CachingModel:
    """Answers from the cache when it can, else asks ``inner`` and stores the answer."""

    def __init__(self, inner: ModelClient, path: Path, fingerprint: str = "") -> None:
        self.inner = inner
        self.fingerprint = fingerprint
        self.name = inner.name
        self.immediate = inner.immediate
        self.task_free = bool(getattr(inner, "task_free", False))
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.stats = CacheStats()

    def lookup(self, request: ChatRequest, sample: int = 0) -> ChatResponse | None:
        row = self._db.execute(
            "SELECT text, tokens_in, tokens_out, latency_s FROM responses "
            "WHERE key = ? AND sample = ?",
            (request_key(self.name, request, self.fingerprint), sample),
        ).fetchone()
        if row is None:
            return None
        return ChatResponse(row[0], self.name, row[1], row[2], row[3], cached=True)

    def store(self, request: ChatRequest, response: ChatResponse, sample: int = 0) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                request_key(self.name, request, self.fingerprint),
                sample,
                self.name,
                response.text,
                response.tokens_in,
                response.tokens_out,
                response.latency_s,
            ),
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        hit = self.lookup(request)
        if hit is not None:
            self.stats.hits += 1
            return hit
        self.stats.misses += 1
        response = await self.inner.complete(request)
        if response.error is None:
            self.store(request, response)
            self.stats.stored += 1
        return response

    def metrics_snapshot(self) -> dict[str, Any]:
        stats = {"hits": self.stats.hits, "misses": self.stats.misses, "stored": self.stats.stored}
        inner = getattr(self.inner, "metrics_snapshot", None)
        return {"cache": stats, **(inner() if callable(inner) else {})}

    async def aclose(self) -> None:
        self._db.close()
        await self.inner.aclose()
