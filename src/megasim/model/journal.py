"""Write-ahead log of model responses: a resumed step replays answers, never re-asks them.

Why: a step is the unit of checkpointing, so a driver killed mid-step reruns the whole
step. Without a log, every answer received before the kill is paid for again and, with
an LLM, resampled (the rerun's decisions differ from the ones the crash interrupted).

How: each answered call is appended, as one JSON line, to
``wal/step=<n>/<writer>.jsonl`` in the run directory the moment it arrives. A line is
one ``os.write`` on an ``O_APPEND`` descriptor, so a SIGKILL loses nothing the kernel
received (a power cut may lose the page cache: there is no fsync per answer). A call is
keyed by (model, agent id, n-th call of that agent in the step, digest of what is sent):
an agent's calls within a step are sequential, so the n-th call is the same call in a
rerun that starts from the same checkpointed state and gets the same answers; the digest
makes a changed prompt (another config, another prompt book) miss rather than replay a
wrong answer. On ``begin(step)`` every writer's file of that step is read, so a resume
with another shard layout (``--shards``, local <-> Ray) still finds each agent's answers.
The driver removes a step's log once the step's checkpoint is committed.

Only successful answers are logged: a failed call costs nothing and a resume after an
outage should ask again. Stand-in models (surrogate, scripted) are never wrapped: they
are deterministic and free, and a million-agent run must not pay a write per agent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Container
from pathlib import Path
from typing import Any

from megasim.model.base import ChatRequest, ChatResponse, ModelClient
from megasim.store.run_dir import RunDirectory

_Key = tuple[str, int, int, str]  # model, agent id, call number in the step, request digest


def request_digest(request: ChatRequest) -> str:
    """What is sent to the model (messages, limits, temperature, seed, schema), hashed."""
    payload = json.dumps(
        [
            [(m.role, m.content) for m in request.messages],
            request.max_tokens,
            request.temperature,
            request.seed,
            request.json_schema,
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def _response_from(record: dict[str, Any]) -> ChatResponse:
    return ChatResponse(
        text=str(record["text"]),
        model=str(record.get("response_model", record["model"])),
        tokens_in=int(record.get("tokens_in", 0)),
        tokens_out=int(record.get("tokens_out", 0)),
        latency_s=float(record.get("latency_s", 0.0)),
        tokens_cached=int(record.get("tokens_cached", 0)),
    )


class StepJournal:
    """The log of one process (the local runtime's, or one Ray shard actor's) for the step
    in progress; shared by every journaled model client of that process."""

    def __init__(
        self,
        run_dir: RunDirectory,
        writer: str,
        agent_ids: Container[int] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.writer = writer  # file name stem, unique per process writing a step
        self.agent_ids = agent_ids  # keep only these agents' answers (a Ray shard's)
        self.clients = 0  # journaled model clients: none -> runtimes skip begin/end
        self.step: int | None = None
        self.replayed = 0  # answers served from the log, cumulative
        self.recorded = 0  # answers appended to the log, cumulative
        self.damaged_lines = 0  # unreadable lines skipped (a write cut by a crash)
        self._calls: dict[int, int] = {}
        self._answers: dict[_Key, ChatResponse] = {}
        self._fd: int | None = None

    def begin(self, step: int) -> None:
        """Start (or restart) ``step``: load every writer's answers logged for it."""
        self.end()
        self.step = step
        self._calls = {}
        self._answers = {}
        folder = self.run_dir.journal_dir(step)
        if folder.is_dir():
            for path in sorted(folder.glob("*.jsonl")):
                self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError:
            return  # unreadable (not a file, gone): those answers are asked again
        for line in data.splitlines():
            try:
                record = json.loads(line)
                agent = int(record["agent_id"])
                if self.agent_ids is not None and agent not in self.agent_ids:
                    continue
                key = (str(record["model"]), agent, int(record["call"]), str(record["request"]))
                self._answers[key] = _response_from(record)
            except (ValueError, KeyError, TypeError):
                self.damaged_lines += 1

    def end(self) -> None:
        """The step's calls are over: close the file (the driver deletes it later)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.step = None  # calls between steps (interviews, a scenario's own) are not logged

    def next_call(self, agent_id: int) -> int:
        """The number of this agent's call in the step (0 for its first)."""
        number = self._calls.get(agent_id, 0)
        self._calls[agent_id] = number + 1
        return number

    def lookup(self, key: _Key) -> ChatResponse | None:
        return self._answers.get(key)

    def record(self, key: _Key, response: ChatResponse) -> None:
        """Append one answer; one write, so a kill leaves whole lines (or a cut last one)."""
        if self.step is None:
            return
        if self._fd is None:
            folder = self.run_dir.journal_dir(self.step)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.writer}.jsonl"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        model, agent, call, digest = key
        line = json.dumps(
            {
                "model": model,
                "agent_id": agent,
                "call": call,
                "request": digest,
                "text": response.text,
                "response_model": response.model,
                "tokens_in": response.tokens_in,
                "tokens_out": response.tokens_out,
                "tokens_cached": response.tokens_cached,
                "latency_s": response.latency_s,
            },
            separators=(",", ":"),
        )
        os.write(self._fd, (line + "\n").encode())
        self.recorded += 1

    def snapshot(self) -> dict[str, int]:
        return {
            "replayed": self.replayed,
            "recorded": self.recorded,
            "damaged_lines": self.damaged_lines,
        }


class JournalingModel:
    """Wraps a model client: a logged answer is replayed, any other call is made and its
    answer logged. Requests without an agent id (interviews, backgrounds) pass through."""

    def __init__(self, inner: ModelClient, journal: StepJournal) -> None:
        self.inner = inner
        self.journal = journal
        self.name = inner.name
        self.immediate = inner.immediate
        self.task_free = bool(getattr(inner, "task_free", False))
        journal.clients += 1

    async def complete(self, request: ChatRequest) -> ChatResponse:
        journal = self.journal
        if request.agent_id is None or journal.step is None:
            return await self.inner.complete(request)
        key = (
            self.name,
            request.agent_id,
            journal.next_call(request.agent_id),
            request_digest(request),
        )
        logged = journal.lookup(key)
        if logged is not None:
            journal.replayed += 1
            return ChatResponse(  # a copy: callers may keep and change what they get
                logged.text,
                logged.model,
                logged.tokens_in,
                logged.tokens_out,
                logged.latency_s,
                tokens_cached=logged.tokens_cached,
            )
        response = await self.inner.complete(request)
        if response.ok:
            journal.record(key, response)
        return response

    def metrics_snapshot(self) -> dict[str, Any]:
        inner = getattr(self.inner, "metrics_snapshot", None)
        return {"journal": self.journal.snapshot(), **(inner() if callable(inner) else {})}

    async def aclose(self) -> None:
        await self.inner.aclose()
