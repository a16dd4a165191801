"""JSON API of interviews and surveys: ask agents, list what was asked, chart the answers."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from megasim.config import ConfigError
from megasim.explore.filters import quote
from megasim.inquiry.ask import INQUIRY_DIR, ask_agents, sample_ids
from megasim.inquiry.base import InquiryError, Question
from megasim.model.base import ModelSetupError
from megasim.run import load_run_config
from megasim.studio.api_agents import filters_of
from megasim.studio.context import Studio, studio_of

router = APIRouter(prefix="/api/runs/{run_id}", tags=["interviews and surveys"])
StudioDep = Annotated[Studio, Depends(studio_of)]
MAX_SAMPLE = 10_000


class InterviewRequest(BaseModel):
    agent_id: int
    question: str = Field(min_length=1, max_length=2000)


class SurveyRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    options: list[str] = Field(default_factory=list, max_length=20)
    low: float | None = Field(default=None, allow_inf_nan=False)
    high: float | None = Field(default=None, allow_inf_nan=False)
    where: list[str] = Field(default_factory=list, max_length=20)
    sample: int = Field(default=50, ge=1, le=MAX_SAMPLE)
    seed: int = Field(default=0, ge=0)


async def _ask(studio: Studio, run_id: str, question: Question, ids: list[int], seed: int) -> Any:
    path = studio.catalog.path(run_id)
    try:
        config = load_run_config(path)
        table = await ask_agents(path, config, question, ids, seed)
    except (InquiryError, ConfigError) as exc:
        raise HTTPException(422, str(exc)) from None
    except ModelSetupError as exc:
        raise HTTPException(503, f"model setup failed: {exc}") from None
    rows = table.to_pylist()
    return {"inquiry_id": rows[0]["inquiry_id"] if rows else None, "answers": rows}


@router.post("/interview", summary="Ask one agent a free question (its own model answers)")
async def interview(run_id: str, body: InterviewRequest, studio: StudioDep) -> dict[str, Any]:
    try:
        question = Question(body.question)
    except InquiryError as exc:
        raise HTTPException(422, str(exc)) from None
    result: dict[str, Any] = await _ask(studio, run_id, question, [body.agent_id], body.agent_id)
    return result


@router.post("/survey", summary="Ask a seeded sample of agents matching filters a question")
async def survey(run_id: str, body: SurveyRequest, studio: StudioDep) -> dict[str, Any]:
    try:
        question = Question(body.question, tuple(body.options), body.low, body.high)
    except InquiryError as exc:
        raise HTTPException(422, str(exc)) from None
    filters = filters_of(body.where)
    index = await asyncio.to_thread(studio.indexes.get, studio.catalog.path(run_id))
    matching = await asyncio.to_thread(index.agent_ids, filters)
    ids = sample_ids(matching, body.sample, body.seed)
    result: dict[str, Any] = await _ask(studio, run_id, question, ids, body.seed)
    return result


def _files(studio: Studio, run_id: str) -> list[str]:
    folder = studio.catalog.path(run_id) / INQUIRY_DIR
    return sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []


@router.get("/inquiries", summary="Interviews and surveys asked of this run, newest first")
def inquiries(run_id: str, studio: StudioDep) -> list[dict[str, Any]]:
    files = _files(studio, run_id)
    if not files:
        return []
    cursor = duckdb.connect(":memory:").execute(
        "SELECT inquiry_id, any_value(kind), any_value(question), any_value(options), "
        "any_value(low), any_value(high), min(time), count(*), count(*) FILTER (WHERE valid), "
        "string_agg(DISTINCT model, ', '), string_agg(DISTINCT backend, ', ') "
        "FROM read_parquet(?) GROUP BY inquiry_id ORDER BY min(time) DESC",
        [files],
    )
    keys: tuple[str, ...] = ("inquiry_id", "kind", "question", "options", "low", "high")
    keys += ("time", "agents", "valid", "models", "backends")
    return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]


@router.get(
    "/inquiries/{inquiry_id}", summary="Answers of one inquiry, and a chart by an attribute"
)
def inquiry(
    run_id: str,
    inquiry_id: str,
    studio: StudioDep,
    by: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    path = studio.catalog.path(run_id)
    files = _files(studio, run_id)
    if not files:
        raise HTTPException(404, "no inquiries in this run")
    db = duckdb.connect(":memory:")
    cursor = db.execute(
        "SELECT * FROM read_parquet(?) WHERE inquiry_id = ? ORDER BY agent_id", [files, inquiry_id]
    )
    names = [d[0] for d in cursor.description or []]
    answers = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    if not answers:
        raise HTTPException(404, f"no inquiry {inquiry_id}")
    chart: list[dict[str, Any]] = []
    if by:
        population = str(path / "population.parquet")
        columns = {
            r[0]
            for r in db.execute("DESCRIBE SELECT * FROM read_parquet(?)", [population]).fetchall()
        }
        if by not in columns:
            raise HTTPException(422, f"no population column {by!r}")
        rows = db.execute(
            f"SELECT CAST(p.{quote(by)} AS VARCHAR), coalesce(i.answer, '(invalid)'), count(*), "
            "avg(i.value) FROM read_parquet(?) i JOIN read_parquet(?) p USING (agent_id) "
            "WHERE i.inquiry_id = ? GROUP BY ALL ORDER BY 1, 2",
            [files, population, inquiry_id],
        ).fetchall()
        chart = [{"key": k, "answer": a, "count": int(n), "mean": m} for k, a, n, m in rows]
    return {"inquiry_id": inquiry_id, "answers": answers, "by": by, "chart": chart}
