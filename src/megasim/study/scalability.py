"""Scalability: how fast cells step their agents, against plain asyncio on this machine.

Seconds depend on the machine; a ratio to a reference measured in the same study does
not (as much). With ``asyncio_reference: true`` the study measures, for every agent count
and surrogate latency among its cells, the simplest program that does the same waiting:
one coroutine per agent awaiting ``asyncio.sleep(latency)``, gathered, once per round.
The report divides each cell's mean seconds per round by that reference's.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from megasim.study.spec import Cell, Study

REFERENCE_DIR = "reference"


def reference_key(cell: Cell) -> tuple[int, float] | None:
    """(agents, latency) of a cell whose agents all use one surrogate model, else None."""
    config = cell.config
    name = config.force_model or config.default_model
    model = config.models.get(name or "")
    if model is None or model.backend != "surrogate" or config.population is None:
        return None
    return config.population.size, float(getattr(model, "latency_s", 0.0))


def _path(study: Study, agents: int, latency: float) -> Path:
    return study.folder / REFERENCE_DIR / f"asyncio-n{agents}-l{latency:g}.json"


async def _plain_asyncio(agents: int, latency: float, rounds: int) -> list[float]:
    walls = []
    for _ in range(rounds):
        start = time.perf_counter()
        await asyncio.gather(*(asyncio.sleep(latency) for _ in range(agents)))
        walls.append(time.perf_counter() - start)
    return walls


async def measure_references(study: Study) -> list[Path]:
    """One reference per (agents, latency, rounds) the cells need; kept, never remeasured."""
    if not study.spec.asyncio_reference:
        return []
    written = []
    needed: dict[tuple[int, float], int] = {}
    for cell in study.cells:
        key = reference_key(cell)
        if key is not None:
            needed[key] = max(needed.get(key, 0), cell.config.rounds)
    for (agents, latency), rounds in sorted(needed.items()):
        path = _path(study, agents, latency)
        if path.is_file():
            continue
        walls = await _plain_asyncio(agents, latency, rounds)
        body = {"agents": agents, "latency_s": latency, "wall_s": walls}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


def scalability_rows(study: Study) -> list[dict[str, Any]]:
    """Per finished cell: agents, runtime, shards, seconds per round, and the ratio to
    plain asyncio (None without a reference)."""
    rows = []
    for cell in study.cells:
        metrics_path = study.cells_dir / cell.id / "metrics.jsonl"
        if not metrics_path.is_file():
            continue
        lines = metrics_path.read_text(encoding="utf-8").splitlines()
        walls = [float(json.loads(line)["wall_s"]) for line in lines if line.strip()]
        if not walls:
            continue
        key = reference_key(cell)
        ref = _path(study, *key) if key else None
        ref_walls = json.loads(ref.read_text())["wall_s"] if ref and ref.is_file() else None
        ours = sum(walls) / len(walls)
        reference = sum(ref_walls) / len(ref_walls) if ref_walls else None
        runtime = cell.config.runtime
        rows.append({
            "cell": cell.id, "agents": key[0] if key else None, "runtime": runtime.kind,
            "shards": runtime.shards, "rounds": len(walls), "s_per_round": ours,
            "asyncio_s_per_round": reference,
            "ratio": ours / reference if reference else None,
        })  # fmt: skip
    return rows
