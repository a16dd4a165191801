"""Running a study: every cell in order, each an ordinary run directory.

A finished cell (its events.jsonl says ``done``) is never run again; a cell that was
started and killed is resumed from its last checkpoint (``megasim resume`` semantics: the
same decisions as an unbroken run); a cell killed before its run directory was complete
(no config or population yet) is started afresh. One driver per study folder: the study
holds ``driver.lock`` there while it runs, as a run does in its own folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from megasim.run import RunResult, resume_simulation, run_simulation
from megasim.runtime.base import ProgressFn
from megasim.simulation import StepListener
from megasim.store.run_lock import RunLock
from megasim.study.spec import Cell, Study, StudyError

CellState = Literal["done", "partial", "new"]
STUDY_FILE = "study.json"


def cell_state(path: Path) -> CellState:
    """``done``: finished; ``partial``: resumable; ``new``: nothing worth keeping."""
    events = path / "events.jsonl"
    if events.is_file():
        for line in events.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("event") == "done":
                    return "done"
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    if (path / "config.yaml").is_file() and (path / "population.parquet").is_file():
        return "partial"
    return "new"


def is_study_folder(path: Path) -> bool:
    return (path / STUDY_FILE).is_file()


def check_folder(study: Study) -> None:
    """The folder belongs to this grid (same cells, same configs), or is new."""
    stored = study.folder / STUDY_FILE
    if not stored.is_file():
        return
    known = json.loads(stored.read_text(encoding="utf-8"))
    if known.get("fingerprint") != study.fingerprint():
        raise StudyError(
            f"{study.source}: the study folder {study.folder} holds another grid (the file "
            "changed since it started); give the study another name or out_dir to start a "
            "new one, or restore the file to continue"
        )


def write_study_file(study: Study) -> None:
    body = {
        "source": str(study.source.resolve()),
        "name": study.spec.name,
        "fingerprint": study.fingerprint(),
        "spec": study.spec.model_dump(mode="json"),
        "cells": [{"id": c.id, "index": c.index, "settings": c.settings} for c in study.cells],
    }
    study.folder.mkdir(parents=True, exist_ok=True)
    tmp = study.folder / f".{STUDY_FILE}.tmp"
    tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
    tmp.replace(study.folder / STUDY_FILE)


@dataclass(frozen=True, slots=True)
class CellEvent:
    cell: Cell
    kind: Literal["skipped", "started", "resumed", "finished", "stopped"]
    result: RunResult | None = None


async def run_cell(
    cell: Cell, study: Study, progress: ProgressFn | None, on_step: StepListener | None
) -> tuple[RunResult, Literal["started", "resumed"]]:
    path = study.cells_dir / cell.id
    if cell_state(path) == "partial":
        return await resume_simulation(path, progress, on_step), "resumed"
    if path.exists():  # killed before the run directory was complete: nothing to keep
        shutil.rmtree(path)
    study.cells_dir.mkdir(parents=True, exist_ok=True)
    return await run_simulation(cell.config, progress, on_step, run_id=cell.id), "started"


async def run_study(
    study: Study,
    on_cell: Callable[[CellEvent], Any] | None = None,
    progress: ProgressFn | None = None,
    on_step: StepListener | None = None,
) -> list[CellEvent]:
    """Run every cell not yet done, in grid order; returns what happened to each cell.
    A stop command to a cell (the studio) stops the study after that cell's step."""
    events: list[CellEvent] = []

    def tell(event: CellEvent) -> None:
        events.append(event)
        if on_cell is not None:
            on_cell(event)

    check_folder(study)  # before the folder is made: a refused grid leaves nothing behind
    study.folder.mkdir(parents=True, exist_ok=True)
    with RunLock(study.folder):  # a second driver is refused before it writes anything
        check_folder(study)
        write_study_file(study)
        for cell in study.cells:
            if cell_state(study.cells_dir / cell.id) == "done":
                tell(CellEvent(cell, "skipped"))
                continue
            tell(CellEvent(cell, "started"))
            result, how = await run_cell(cell, study, progress, on_step)
            if result.stopped:
                tell(CellEvent(cell, "stopped", result))
                break
            tell(CellEvent(cell, "finished" if how == "started" else "resumed", result))
        else:  # every cell done: the plain-asyncio references, if the study asks for them
            from megasim.study.scalability import measure_references

            await measure_references(study)
    return events
