"""Ask agents of a run a question, with their own models, without touching the run.

Works on finished and live runs alike: it reads only the population, the decisions
written so far and the latest checkpoint, builds its own model clients (the run's
model configuration, so the same server, key and sampling settings), and writes its
answers to ``inquiries/<inquiry_id>.parquet`` beside the run's own files.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from megasim.config import SimulationConfig
from megasim.inquiry.base import INQUIRY_SCHEMA, InquiryError, Question
from megasim.inquiry.prompt import answer_schema, build_messages, read_answer
from megasim.model.base import ChatRequest, ChatResponse, ModelClient
from megasim.model.factory import build_models
from megasim.plugins import load_scenario_class
from megasim.runtime.checkpoint import CheckpointStore
from megasim.seeding import derive_seed

INQUIRY_DIR = "inquiries"
_MAX_TOKENS_FREE = 160
_MAX_TOKENS_STRUCTURED = 48


def sample_ids(ids: Sequence[int], n: int, seed: int) -> list[int]:
    """A seeded sample of ``n`` agents (all of them if fewer), in id order."""
    if n >= len(ids):
        return sorted(ids)
    picked = np.random.default_rng(seed).choice(np.asarray(ids, dtype=np.int64), n, replace=False)
    return sorted(int(x) for x in picked)


def _personas(run_path: Path, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    db = duckdb.connect(":memory:")
    cursor = db.execute(
        "SELECT * FROM read_parquet(?) WHERE agent_id IN (SELECT unnest(?))",
        [str(run_path / "population.parquet"), list(ids)],
    )
    names = [d[0] for d in cursor.description or []]
    return {int(r[0]): dict(zip(names, r, strict=True)) for r in cursor.fetchall()}


def _decisions(run_path: Path, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    files = sorted(str(p) for p in (run_path / "steps").glob("step=*/*.parquet"))
    found: dict[int, list[dict[str, Any]]] = {int(i): [] for i in ids}
    if not files:
        return found
    db = duckdb.connect(":memory:")
    rows = db.execute(
        "SELECT agent_id, step, value, text FROM read_parquet(?, hive_partitioning = false) "
        "WHERE agent_id IN (SELECT unnest(?)) ORDER BY agent_id, step",
        [files, list(ids)],
    ).fetchall()
    for agent_id, step, value, text in rows:
        found[int(agent_id)].append({"step": step, "value": value, "text": text})
    return found


def agent_states(run_path: Path, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Checkpointed state of ``ids`` (latest checkpoint), scanning lines cheaply first."""
    latest = CheckpointStore(run_path).latest()
    if latest is None:
        return {}
    wanted = {f'{{"agent_id": {int(i)},' for i in ids}
    states: dict[int, dict[str, Any]] = {}
    for path in sorted(latest[1].glob("shard=*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                head = line[: line.find(",") + 1]
                if head in wanted:
                    record = json.loads(line)
                    states[int(record["agent_id"])] = record["state"]
    return states


async def ask_agents(
    run_path: Path,
    config: SimulationConfig,
    question: Question,
    agent_ids: Sequence[int],
    seed: int = 0,
    models: Mapping[str, ModelClient] | None = None,
) -> pa.Table:
    """Ask every agent in ``agent_ids``; the answers are written and returned as a table."""
    if not agent_ids:
        raise InquiryError("no agents to ask (the filter matched none)")
    # file scans in a worker thread: a studio's event loop keeps serving meanwhile
    personas = await asyncio.to_thread(_personas, run_path, agent_ids)
    missing = sorted(set(agent_ids) - set(personas))
    if missing:
        raise InquiryError(f"no agents {missing[:10]} in this run")
    history = await asyncio.to_thread(_decisions, run_path, agent_ids)
    states = await asyncio.to_thread(agent_states, run_path, agent_ids)
    owned = models is None
    names = {str(p["model"]) for p in personas.values()}
    clients = dict(models) if models is not None else build_models(config.models, names)
    kind = "survey" if question.structured else "interview"
    inquiry_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    schema = answer_schema(question)
    meta: dict[str, Any] = {"task": kind, "options": list(question.options)}
    meta |= {"low": question.low, "high": question.high}
    max_tokens = _MAX_TOKENS_STRUCTURED if question.structured else _MAX_TOKENS_FREE

    scenario = load_scenario_class(config.scenario).name  # not a file path or module

    async def one(agent_id: int) -> tuple[int, tuple[Any, ...], ChatResponse]:
        persona = personas[agent_id]
        messages = build_messages(
            question, scenario, persona, history[agent_id], states.get(agent_id)
        )
        request = ChatRequest(
            messages,
            max_tokens,
            None,
            derive_seed(seed, agent_id),
            schema,
            agent_id,
            persona,
            meta,
        )
        return agent_id, messages, await clients[str(persona["model"])].complete(request)

    try:
        answers = await asyncio.gather(*(one(int(a)) for a in agent_ids))
    finally:
        if owned:
            for client in clients.values():
                await client.aclose()
    now = time.time()
    rows: dict[str, list[Any]] = {name: [] for name in INQUIRY_SCHEMA.names}
    for agent_id, messages, response in answers:
        model = str(personas[agent_id]["model"])
        reading = read_answer(question, response.text) if response.error is None else None
        row = {
            "inquiry_id": inquiry_id,
            "kind": kind,
            "time": now,
            "question": question.text,
            "options": json.dumps(list(question.options)) if question.options else None,
            "low": question.low,
            "high": question.high,
            "agent_id": agent_id,
            "model": model,
            "backend": config.models[model].backend if model in config.models else "unknown",
            "prompt": json.dumps([{"role": m.role, "content": m.content} for m in messages]),
            "raw_text": response.text if response.error is None else None,
            "answer": reading.answer if reading else None,
            "value": reading.value if reading else None,
            "valid": bool(reading and reading.valid),
            "error": f"model: {response.error}" if reading is None else reading.error,
            "tokens_in": response.tokens_in,
            "tokens_out": response.tokens_out,
            "latency_ms": response.latency_s * 1000,
        }
        for name, value in row.items():
            rows[name].append(value)
    table = pa.Table.from_pydict(rows, schema=INQUIRY_SCHEMA)
    write_inquiry(run_path, inquiry_id, table)
    return table


def write_inquiry(run_path: Path, inquiry_id: str, table: pa.Table) -> Path:
    folder = run_path / INQUIRY_DIR
    folder.mkdir(exist_ok=True)
    target = folder / f"{inquiry_id}.parquet"
    tmp = folder / f".{inquiry_id}.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return target


def read_inquiries(run_path: Path) -> pa.Table:
    files = sorted((run_path / INQUIRY_DIR).glob("*.parquet"))
    if not files:
        return INQUIRY_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=INQUIRY_SCHEMA) for f in files])
