"""JSON API of runs: list, summary, per-step outcomes, answers, breakdowns, events,
cluster, report files, and the live channel (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from rich.console import Console

from megasim.explore.agents import column_kinds
from megasim.studio.analysis import breakdown_from_metrics, values_from_summary
from megasim.studio.context import Studio, studio_of

router = APIRouter(prefix="/api/runs", tags=["runs"])
StudioDep = Annotated[Studio, Depends(studio_of)]
REPORT_FILE = re.compile(r"^[A-Za-z0-9_.=-]{1,120}\.(png|json|html|csv|md|txt)$")
SHARD_EVENTS = frozenset(
    {
        "shard_lost",
        "shard_moved",
        "shard_restarted",
        "shard_restart_requested",
        "env_partition_lost",
        "env_partitions_restored",
    }
)


@router.get("", summary="Every run under the studio's runs folder, newest first")
def list_runs(studio: StudioDep) -> list[dict[str, Any]]:
    rows = [studio.catalog.summary(run_id) for run_id in studio.catalog.run_ids()]
    return sorted(rows, key=lambda r: r["started"] or 0, reverse=True)


@router.get("/{run_id}", summary="One run: summary, live status and resolved config")
def run_detail(run_id: str, studio: StudioDep) -> dict[str, Any]:
    catalog = studio.catalog
    return {
        "summary": catalog.summary(run_id),
        "status": catalog.status(run_id),
        "config": catalog.config(run_id),
    }


@router.get("/{run_id}/steps", summary="metrics.jsonl: outcome, counts, tokens, latency per step")
def run_steps(run_id: str, studio: StudioDep) -> list[dict[str, Any]]:
    return studio.catalog.metrics(run_id)


@router.get("/{run_id}/values", summary="Histogram and quantiles of one step's valid answers")
def run_values(
    run_id: str,
    studio: StudioDep,
    step: Annotated[int | None, Query(ge=1, description="default: last completed step")] = None,
    bins: Annotated[int, Query(ge=1, le=200)] = 40,
    exact: Annotated[bool, Query(description="read the decisions, not the step's summary")] = False,
) -> dict[str, Any]:
    path = studio.catalog.path(run_id)
    metrics = studio.catalog.metrics(run_id)
    if step is None:
        if not metrics:
            return {"step": None, "n": 0, "edges": [], "counts": []}
        step = int(metrics[-1]["step"])
    record = next((m for m in metrics if int(m.get("step", -1)) == step), None)
    fast = values_from_summary(record, bins) if record is not None and not exact else None
    return {"step": step, **(fast or studio.analysis.values(path, step, bins))}


@router.get("/{run_id}/breakdown", summary="Answers per step by a population or decision column")
def run_breakdown(
    run_id: str,
    studio: StudioDep,
    by: Annotated[str, Query(min_length=1, max_length=100)] = "model",
) -> dict[str, Any]:
    path = studio.catalog.path(run_id)
    fast = breakdown_from_metrics(studio.catalog.metrics(run_id), by)
    return fast or studio.analysis.breakdown(path, by, column_kinds(path))


@router.get("/{run_id}/columns", summary="Population and decision columns with their kinds")
def run_columns(run_id: str, studio: StudioDep) -> list[dict[str, str]]:
    kinds = column_kinds(studio.catalog.path(run_id))
    return [{"name": name, "kind": kind} for name, kind in kinds.items()]


@router.get("/{run_id}/quantiles", summary="Median and quartiles of the valid answers, per step")
def run_quantiles(run_id: str, studio: StudioDep) -> list[dict[str, Any]]:
    path = studio.catalog.path(run_id)
    found = []
    for record in studio.catalog.metrics(run_id):
        step = int(record["step"])
        values = values_from_summary(record, 1) or studio.analysis.values(path, step)
        found.append({"step": step, **values.get("quantiles", {})})
    return found


@router.get("/{run_id}/events", summary="events.jsonl, from line `after` on")
def run_events(
    run_id: str, studio: StudioDep, after: Annotated[int, Query(ge=0)] = 0
) -> list[dict[str, Any]]:
    return studio.catalog.events(run_id)[after:]


@router.get("/{run_id}/cluster", summary="Nodes, shards and keyed-state partitions with health")
def run_cluster(run_id: str, studio: StudioDep) -> dict[str, Any]:
    return cluster_view(studio, run_id)


def cluster_view(studio: Studio, run_id: str) -> dict[str, Any]:
    status = studio.catalog.status(run_id) or {}
    state = studio.catalog.state(run_id)
    live = state in ("running", "paused", "stopping")
    shards = [dict(s) for s in status.get("shards", [])]
    for shard in shards:
        if not live:
            shard["state"] = "ended"
    nodes: dict[str, dict[str, Any]] = {}
    for shard in shards:
        node = nodes.setdefault(
            str(shard.get("node")),
            {"node": shard.get("node"), "host": shard.get("host"), "shards": 0, "agents": 0},
        )
        node["shards"] += 1
        node["agents"] += int(shard.get("agents") or 0)
    history = [e for e in studio.catalog.events(run_id) if e.get("event") in SHARD_EVENTS]
    return {
        "state": state,
        "driver": {
            k: status.get(k) for k in ("host", "pid", "driver_cpu_percent", "driver_rss_mb")
        },
        "step": status.get("step"),
        "nodes": list(nodes.values()),
        "shards": shards,
        "partitions": status.get("partitions", []),
        "history": history,
    }


@router.post("/{run_id}/report", summary="Render the run's report (tables, PNG plots, summary)")
def make_report(run_id: str, studio: StudioDep) -> dict[str, Any]:
    from megasim.report import ReportError, render_report

    path = studio.catalog.path(run_id)
    buffer = io.StringIO()
    try:
        files = render_report(path, Console(file=buffer, width=110, color_system=None))
    except ReportError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"text": buffer.getvalue(), "files": [f.name for f in files]}


@router.get("/{run_id}/report", summary="Files of the run's last rendered report")
def report_files(run_id: str, studio: StudioDep) -> list[str]:
    folder = studio.catalog.path(run_id) / "report"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if REPORT_FILE.match(p.name))


@router.get("/{run_id}/report/{name}", summary="One report file", response_class=FileResponse)
def report_file(run_id: str, name: str, studio: StudioDep) -> FileResponse:
    folder = studio.catalog.path(run_id) / "report"
    if not REPORT_FILE.match(name) or not (folder / name).is_file():
        raise HTTPException(404, "no such report file")
    return FileResponse(folder / name)


@router.get(
    "/{run_id}/live",
    response_class=EventSourceResponse,
    summary="Live channel: `status` every second, `steps` and `events` as they are written",
)
async def live(run_id: str, request: Request, studio: StudioDep) -> AsyncIterator[ServerSentEvent]:
    catalog = studio.catalog
    catalog.path(run_id)  # 404 before the stream starts
    sent_steps = sent_events = 0
    first = True
    while not await request.is_disconnected():
        summary = catalog.summary(run_id)
        yield ServerSentEvent(
            event="status", data={"summary": summary, "status": catalog.status(run_id)}
        )
        # "reset": the list is whole (a new connection, or metrics rewritten by a resume);
        # a page replaces what it holds instead of appending, so reconnects never duplicate
        metrics = catalog.metrics(run_id)
        if len(metrics) != sent_steps or first:
            reset = first or len(metrics) < sent_steps
            new = metrics if reset else metrics[sent_steps:]
            yield ServerSentEvent(event="steps", data={"reset": reset, "steps": new})
            sent_steps = len(metrics)
        events = catalog.events(run_id)
        if len(events) > sent_events or first:
            fresh = events if first else events[sent_events:]
            yield ServerSentEvent(event="events", data={"reset": first, "events": fresh})
            sent_events = len(events)
        first = False
        await asyncio.sleep(studio.live_interval_s)
