"""JSON API of agents: a filtered, sorted page of up to a million, export, and one agent.

Filters use the text syntax of ``explore/filters.py`` (``where=age>=30``), repeated.
Never more than ``PAGE_LIMIT`` agents go to the page; exports stream from a file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query
from fastapi.responses import FileResponse

from megasim.explore.agents import PAGE_LIMIT
from megasim.explore.filters import Filter, parse_filter
from megasim.inquiry.ask import agent_states
from megasim.runtime.checkpoint import CheckpointStore
from megasim.studio.context import Studio, studio_of

router = APIRouter(prefix="/api/runs/{run_id}/agents", tags=["agents"])
StudioDep = Annotated[Studio, Depends(studio_of)]
Where = Annotated[
    list[str] | None,
    Query(description="filters such as age>=30, model=a|b, raw_text~word", max_length=20),
]


def filters_of(where: list[str] | None) -> list[Filter]:
    return [parse_filter(w) for w in where or [] if w.strip()]


@router.get("", summary="A filtered, sorted page of agents with their decision of one step")
def agents_page(
    run_id: str,
    studio: StudioDep,
    where: Where = None,
    sort: Annotated[str | None, Query(max_length=100)] = None,
    desc: bool = False,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 50,
    step: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    index = studio.indexes.get(studio.catalog.path(run_id), step)
    total, rows = index.page(filters_of(where), sort, desc, offset, limit)
    return {
        "step": index.step,
        "agents": index.rows,
        "matching": total,
        "offset": offset,
        "columns": [{"name": n, "kind": k} for n, k in index.columns],
        "rows": rows,
    }


@router.get(
    "/export", summary="Every matching agent as CSV or Parquet", response_class=FileResponse
)
def agents_export(
    run_id: str,
    studio: StudioDep,
    background: BackgroundTasks,
    where: Where = None,
    sort: Annotated[str | None, Query(max_length=100)] = None,
    desc: bool = False,
    step: Annotated[int | None, Query(ge=1)] = None,
    format: Annotated[str, Query(pattern="^(csv|parquet)$")] = "csv",
) -> FileResponse:
    index = studio.indexes.get(studio.catalog.path(run_id), step)
    filters = filters_of(where)  # bad filters fail here, before any file exists
    folder = Path(tempfile.mkdtemp(prefix="megasim-export-"))
    try:
        target = index.export(filters, sort, desc, format, folder / f"agents.{format}")
    except BaseException:
        _remove(folder)
        raise
    background.add_task(_remove, folder)
    media = "text/csv" if format == "csv" else "application/vnd.apache.parquet"
    return FileResponse(target, media_type=media, filename=f"{run_id}-agents.{format}")


def _remove(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink(missing_ok=True)
    folder.rmdir()


@router.get("/{agent_id}", summary="One agent: persona, every decision, messages, state")
def agent_detail(run_id: str, agent_id: int, studio: StudioDep) -> dict[str, Any]:
    path = studio.catalog.path(run_id)
    db = duckdb.connect(":memory:")
    cursor = db.execute(
        "SELECT * FROM read_parquet(?) WHERE agent_id = ?",
        [str(path / "population.parquet"), agent_id],
    )
    names = [d[0] for d in cursor.description or []]
    found = cursor.fetchone()
    if found is None:
        raise HTTPException(404, f"no agent {agent_id} in this run")
    persona = dict(zip(names, found, strict=True))
    files = sorted(str(p) for p in (path / "steps").glob("step=*/*.parquet"))
    decisions: list[dict[str, Any]] = []
    if files:
        cursor = db.execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = false) "
            "WHERE agent_id = ? ORDER BY step",
            [files, agent_id],
        )
        names = [d[0] for d in cursor.description or []]
        decisions = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    prompts = _prompts(path, {str(d["prompt_id"]) for d in decisions})
    for decision in decisions:
        decision["prompt"] = prompts.get(str(decision["prompt_id"]).removesuffix("+repair"))
    return {
        "agent_id": agent_id,
        "persona": persona,
        "decisions": decisions,
        "state": agent_states(path, [agent_id]).get(agent_id),
        "messages": _messages(path, agent_id),
    }


def _prompts(path: Path, prompt_ids: set[str]) -> dict[str, Any]:
    """Prompts as sent, from ``prompts/step=*/shard=*.parquet`` (prompt_id -> messages)."""
    files = sorted(str(p) for p in (path / "prompts").glob("step=*/*.parquet"))
    if not files or not prompt_ids:
        return {}
    wanted = [p.removesuffix("+repair") for p in prompt_ids]
    rows = (
        duckdb.connect(":memory:")
        .execute(
            "SELECT DISTINCT prompt_id, messages FROM read_parquet(?, hive_partitioning = false) "
            "WHERE prompt_id IN (SELECT unnest(?))",
            [files, wanted],
        )
        .fetchall()
    )
    return {str(pid): list(messages) for pid, messages in rows}


def _messages(path: Path, agent_id: int) -> list[dict[str, Any]]:
    """Messages to or from the agent still in flight at the latest checkpoint."""
    latest = CheckpointStore(path).latest()
    if latest is None:
        return []
    driver = CheckpointStore(path).load_driver(latest[1])
    return [
        m
        for m in driver.get("messages", [])
        if m.get("sender") == agent_id or m.get("receiver") == agent_id
    ]
