"""LLM-written agent backgrounds, consistent with each agent's sampled attributes.

:func:`generate_backgrounds` asks the model for one JSON background per pending agent,
validates it (:mod:`backgrounds_validate`), rejects near-duplicates of accepted stories
(:mod:`backgrounds_dedup`), retries with a new seed, and appends each finished agent to a
JSONL sidecar (:mod:`backgrounds_sidecar`). :func:`merge_backgrounds` then turns input +
sidecar into the output table. Agents already done (in the sidecar, or "ok"/"rejected" in
the input) are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from megasim.model.base import ChatRequest, ChatResponse, ModelClient, ModelError
from megasim.population.backgrounds_dedup import NearDuplicateIndex
from megasim.population.backgrounds_prompt import (
    MAX_TOKENS,
    background_messages,
    background_schema,
    compose_background,
)
from megasim.population.backgrounds_resume import (
    done_and_index,
    pending_agents,
    pending_rows,
    row_attributes,
)
from megasim.population.backgrounds_sidecar import (
    BackgroundRecord,
    SidecarWriter,
    merge_backgrounds,
    sidecar_path,
    write_parquet_atomic,
)
from megasim.population.backgrounds_validate import validate_background
from megasim.seeding import derive_seed

__all__ = [
    "BackgroundModelError",
    "BackgroundReport",
    "generate_backgrounds",
    "merge_backgrounds",
    "pending_agents",
    "row_attributes",
    "sidecar_path",
    "write_parquet_atomic",
]

Progress = Callable[["BackgroundReport"], None]
"""Called after each finished agent with the running report (``finished`` of ``todo``)."""


class BackgroundModelError(RuntimeError):
    """The model answered nothing for many agents in a row: stop rather than burn the run."""


@dataclass(slots=True)
class BackgroundReport:
    """Counts for one run of :func:`generate_backgrounds`."""

    rows: int = 0  # agents in the table
    skipped: int = 0  # already done before this run (input or sidecar)
    todo: int = 0  # agents this run set out to do (after --limit)
    ok: int = 0
    rejected: int = 0
    no_answer: int = 0  # every attempt was a model error: left pending, retried next run
    warnings: int = 0  # accepted with a soft warning (occupation/education not mentioned)
    calls: int = 0
    retries: int = 0  # calls after an agent's first
    duplicates: int = 0  # near-duplicate stories regenerated (each also counts as a retry)
    tokens_in: int = 0
    tokens_out: int = 0
    wall_s: float = 0.0

    @property
    def finished(self) -> int:
        """Agents this run is through with (including those left pending without answer)."""
        return self.ok + self.rejected + self.no_answer

    @property
    def pending(self) -> int:
        """Agents without a finished background after this run."""
        return self.rows - self.skipped - self.ok - self.rejected


class _Run:
    """State shared by the workers of one run (one event loop: no locks needed)."""

    def __init__(
        self,
        model: ModelClient,
        seed: int,
        retries: int,
        index: NearDuplicateIndex,
        report: BackgroundReport,
        max_tokens: int,
    ) -> None:
        self.model = model
        self.seed = seed
        self.retries = retries
        self.index = index
        self.report = report
        self.max_tokens = max_tokens
        self.no_answer_streak = 0
        self.last_error = ""

    async def _call(self, request: ChatRequest) -> ChatResponse:
        try:
            response = await self.model.complete(request)
        except ModelError as exc:  # a bare backend; RetryingModel returns an error instead
            response = ChatResponse(text="", model=self.model.name, error=str(exc))
        self.report.calls += 1
        self.report.tokens_in += response.tokens_in
        self.report.tokens_out += response.tokens_out
        return response

    async def one(self, agent_id: int, attributes: dict[str, Any]) -> BackgroundRecord | None:
        """Attempts for one agent: a record when it finished, None when the model never
        answered (the agent stays pending)."""
        messages = background_messages(attributes)
        schema = background_schema(attributes)
        reasons: list[str] = []
        answered = False
        last_text: str | None = None
        tokens = [0, 0]
        duplicates = 0
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                self.report.retries += 1
            request = ChatRequest(
                messages=messages,
                max_tokens=self.max_tokens,
                seed=derive_seed(self.seed, agent_id, attempt),
                json_schema=schema,
                agent_id=agent_id,
                persona=attributes,
                meta={"task": "background", "attempt": attempt, "step": attempt},
            )
            response = await self._call(request)
            tokens[0] += response.tokens_in
            tokens[1] += response.tokens_out
            if response.error is not None:
                reasons.append(f"attempt {attempt + 1}: model: {response.error}")
                self.last_error = response.error
                continue
            answered = True
            last_text = response.text
            verdict = validate_background(response.text, attributes)
            if not verdict.ok or verdict.data is None:
                reasons.append(f"attempt {attempt + 1}: " + "; ".join(verdict.reasons))
                continue
            data = verdict.data
            duplicate = self.index.add_unless_duplicate(data["story"], agent_id)
            if duplicate is not None:
                duplicates += 1
                self.report.duplicates += 1
                other, similarity = duplicate
                reasons.append(
                    f"attempt {attempt + 1}: near-duplicate of agent {other}'s story "
                    f"(similarity {similarity:.2f})"
                )
                continue
            if verdict.warnings:
                self.report.warnings += 1
            self.report.ok += 1
            return BackgroundRecord(
                agent_id=agent_id,
                background_status="ok",
                background=compose_background(data["name"], data["personality"], data["story"]),
                background_json=json.dumps(data, ensure_ascii=False),
                background_error="; ".join(verdict.warnings) or None,
                background_model=self.model.name,
                background_attempts=attempt + 1,
                story=data["story"],
                tokens_in=tokens[0],
                tokens_out=tokens[1],
                duplicates=duplicates,
            )
        if not answered:
            self.report.no_answer += 1
            return None
        self.report.rejected += 1
        return BackgroundRecord(
            agent_id=agent_id,
            background_status="rejected",
            background=None,
            background_json=last_text,
            background_error=" | ".join(reasons),
            background_model=self.model.name,
            background_attempts=attempts,
            tokens_in=tokens[0],
            tokens_out=tokens[1],
            duplicates=duplicates,
        )


async def generate_backgrounds(
    table: pa.Table,
    model: ModelClient,
    *,
    seed: int,
    retries: int,
    sidecar: Path,
    progress: Progress | None = None,
    limit: int | None = None,
    concurrency: int = 16,
    max_tokens: int = MAX_TOKENS,
    give_up_after: int = 20,
) -> BackgroundReport:
    """Write a background for every pending agent of ``table`` into ``sidecar``.

    At most ``concurrency`` calls are in flight; rows become Python values
    :data:`BATCH_ROWS` at a time. ``retries`` extra attempts (new seed each) follow a
    rejected answer or a near-duplicate. Agents that got no answer at all (model errors)
    stay pending; after ``give_up_after`` such agents in a row, BackgroundModelError.
    Cancellation or KeyboardInterrupt stops the run with every finished agent saved.
    """
    if "agent_id" not in table.column_names:
        raise ValueError("the population has no agent_id column")
    started = time.perf_counter()
    done, index = done_and_index(table, sidecar)
    report = BackgroundReport(rows=table.num_rows)
    ids = table.column("agent_id").to_numpy(zero_copy_only=False)
    report.skipped = int(np.isin(ids, np.fromiter(done, np.int64, len(done))).sum())
    todo = table.num_rows - report.skipped
    report.todo = todo if limit is None else min(limit, todo)
    run = _Run(model, seed, retries, index, report, max_tokens)
    rows = pending_rows(table, done, limit)

    async def worker(writer: SidecarWriter) -> None:
        for agent_id, attributes in rows:  # a shared iterator: each row goes to one worker
            record = await run.one(agent_id, attributes)
            if record is None:
                run.no_answer_streak += 1
                if run.no_answer_streak >= give_up_after:
                    raise BackgroundModelError(
                        f"model {model.name!r} gave no answer for {run.no_answer_streak} "
                        f"agents in a row; last error: {run.last_error}"
                    )
            else:
                run.no_answer_streak = 0
                writer.write(record)
            if progress is not None:
                progress(report)

    with SidecarWriter(sidecar) as writer:
        tasks = [asyncio.ensure_future(worker(writer)) for _ in range(max(1, concurrency))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            report.wall_s = time.perf_counter() - started
    return report
