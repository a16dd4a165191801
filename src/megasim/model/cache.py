"""Opt-in response cache in an embedded database (SQLite), for replaying runs.

Keyed by a hash of the model name and everything that determines the answer (messages,
max tokens, temperature, schema, seed) plus a sample index; requests carry per-agent
seeds, so a rerun with the same run seed hits for every agent and calls no model.
Failed calls are not cached. Safe for several processes on one machine (SQLite locking;
WAL journal), e.g. Ray shards on a node sharing one cache file.

Every database call runs on one thread of the cache's own: another process holding the
write lock makes SQLite wait (up to ``busy_timeout_s``), and that wait must stall only
the cache, never the event loop every agent of the shard runs on. One thread, because a
SQLite connection belongs to the thread that opened it and the calls are short.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from megasim.model.base import ChatRequest, ChatResponse, ModelClient

_T = TypeVar("_T")

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

    def __init__(
        self,
        inner: ModelClient,
        path: Path,
        fingerprint: str = "",
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.inner = inner
        self.fingerprint = fingerprint
        self.name = inner.name
        self.immediate = inner.immediate
        self.task_free = bool(getattr(inner, "task_free", False))
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()
        self._busy_timeout_s = busy_timeout_s
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="megasim-cache")
        # opened on the cache's thread, first in its queue: even a locked file never
        # blocks whoever builds the model (a studio inquiry builds them in its server)
        self._thread.submit(self._open)

    def _open(self) -> None:
        db = sqlite3.connect(str(self.path), timeout=self._busy_timeout_s, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        self._db = db

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:  # opening failed: try again, so that its error surfaces here
            self._open()
        assert self._db is not None
        return self._db

    async def _run(self, call: Callable[[], _T]) -> _T:
        """``call()`` on the cache's thread; the event loop keeps running meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def lookup(self, request: ChatRequest, sample: int = 0) -> ChatResponse | None:
        """The cached answer, or None (blocking: from sync code; coroutines use ``complete``)."""
        return self._thread.submit(self._lookup, request, sample).result()

    def store(self, request: ChatRequest, response: ChatResponse, sample: int = 0) -> None:
        """Keep ``response`` (blocking: from sync code; coroutines use ``complete``)."""
        self._thread.submit(self._store, request, response, sample).result()

    def _lookup(self, request: ChatRequest, sample: int) -> ChatResponse | None:
        row = (
            self._connection()
            .execute(
                "SELECT text, tokens_in, tokens_out, latency_s FROM responses "
                "WHERE key = ? AND sample = ?",
                (request_key(self.name, request, self.fingerprint), sample),
            )
            .fetchone()
        )
        if row is None:
            return None
        return ChatResponse(row[0], self.name, row[1], row[2], row[3], cached=True)

    def _store(self, request: ChatRequest, response: ChatResponse, sample: int) -> None:
        self._connection().execute(
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
        hit = await self._run(lambda: self._lookup(request, 0))
        if hit is not None:
            self.stats.hits += 1
            return hit
        self.stats.misses += 1
        response = await self.inner.complete(request)
        if response.error is None:
            await self._run(lambda: self._store(request, response, 0))
            self.stats.stored += 1
        return response

    def metrics_snapshot(self) -> dict[str, Any]:
        stats = {"hits": self.stats.hits, "misses": self.stats.misses, "stored": self.stats.stored}
        inner = getattr(self.inner, "metrics_snapshot", None)
        return {"cache": stats, **(inner() if callable(inner) else {})}

    async def aclose(self) -> None:
        await self._run(self._close)
        self._thread.shutdown(wait=False)
        await self.inner.aclose()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
