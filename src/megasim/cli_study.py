"""``megasim study STUDY.yaml``: run (or continue) a grid of runs; ``--dry-run`` costs it.

``megasim resume STUDY_DIR`` and ``megasim report STUDY_DIR`` come here too (cli.py hands
over when the folder holds a study.json)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from megasim.config import ConfigError
from megasim.model.base import ModelSetupError
from megasim.simulation import StepOutcome
from megasim.store.run_dir import RunDirectoryError
from megasim.study.spec import Study, StudyError, load_study

console = Console()
err_console = Console(stderr=True)
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _dry_run(study: Study) -> None:
    from megasim.study.estimate import estimate

    rows = estimate(study)
    table = Table(title=f"study {study.spec.name}: {len(rows)} cells", box=box.SIMPLE_HEAD)
    for column in ("cell", "state", "decisions", "calls", "tokens in", "tokens out", "time"):
        left = column in ("cell", "state")
        table.add_column(column, justify="left" if left else "right", overflow="fold")
    todo = [r for r in rows if r.state != "done"]
    for r in rows:
        time = "?" if r.seconds is None else f"{r.seconds:.0f} s"
        table.add_row(
            r.cell,
            r.state,
            str(r.decisions),
            str(r.calls),
            str(r.tokens_in),
            str(r.tokens_out),
            time,
        )
    console.print(table)
    left_s = [r.seconds for r in todo]
    known = sum(s for s in left_s if s is not None)
    unknown = sum(1 for s in left_s if s is None)
    console.print(
        f"left to run: {len(todo)} cells, {sum(r.calls for r in todo)} calls, "
        f"{sum(r.tokens_in + r.tokens_out for r in todo)} tokens, time "
        + (f"{known:.0f} s" if not unknown else f"{known:.0f} s measured, {unknown} cells unknown"),
        highlight=False,
    )
    console.print("basis: " + "; ".join(sorted({r.basis for r in rows})), highlight=False)
    console.print(f"study folder: {study.folder}", highlight=False)


def _run(study: Study, quiet: bool) -> None:
    from megasim.study.estimate import agents_of as population_size
    from megasim.study.runner import CellEvent, run_study

    total = sum(population_size(c.config) * c.config.rounds for c in study.cells)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    cells = progress.add_task("cells", total=len(study.cells))
    decisions = progress.add_task("decisions", total=total)
    done = [0]  # decisions of finished steps, over the study
    in_step: dict[int, int] = {}

    def on_cell(event: CellEvent) -> None:
        cfg = event.cell.config
        size = population_size(cfg) * cfg.rounds
        if event.kind == "skipped":
            done[0] += size
            progress.update(cells, advance=1)
        elif event.kind == "started":
            progress.update(cells, description=f"cell {event.cell.id}")
        elif event.kind in ("finished", "resumed"):
            progress.update(cells, advance=1)
        progress.update(decisions, completed=done[0])

    def on_progress(shard: int, count: int) -> None:
        in_step[shard] = count
        progress.update(decisions, completed=done[0] + sum(in_step.values()))

    def on_step(outcome: StepOutcome) -> None:
        done[0] += int(outcome.metrics["agents"])
        in_step.clear()
        progress.update(decisions, completed=done[0])

    from megasim.run import completed_steps

    for cell in study.cells:  # steps a partial cell already finished count as done
        path = study.cells_dir / cell.id
        if path.is_dir():
            from megasim.study.runner import cell_state

            if cell_state(path) == "partial":
                done[0] += population_size(cell.config) * completed_steps(path)
    try:
        with progress:
            events = asyncio.run(run_study(study, on_cell, on_progress, on_step))
    except (ConfigError, StudyError, RunDirectoryError) as exc:
        raise _fail(str(exc)) from None
    except ModelSetupError as exc:
        raise _fail(f"model setup failed: {exc}", code=1) from None
    except KeyboardInterrupt:
        raise _fail(f"interrupted; continue with `megasim resume {study.folder}`", 130) from None
    ran = [e for e in events if e.kind in ("finished", "resumed")]
    skipped = [e for e in events if e.kind == "skipped"]
    if any(e.kind == "stopped" for e in events):
        console.print(f"stopped on request; continue with `megasim resume {study.folder}`")
    console.print(
        f"{len(ran)} cells run ({sum(e.kind == 'resumed' for e in ran)} resumed), "
        f"{len(skipped)} already done; study folder: [bold]{study.folder}[/]"
    )
    console.print(f"report: megasim report {study.folder}", highlight=False)


def _load(path: Path, write: bool = True) -> Study:
    try:
        return load_study(path, write)
    except (StudyError, ConfigError) as exc:
        raise _fail(str(exc)) from None


def study(
    study_file: Annotated[Path, typer.Argument(help="a study YAML (see docs/study.md)")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print cells and estimated cost; run nothing")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="no progress display")] = False,
) -> None:
    """Run a grid of runs (cells) under one folder; rerun to continue a killed study."""
    loaded = _load(study_file, write=not dry_run)
    if dry_run:
        _dry_run(loaded)
        return
    _run(loaded, quiet)


def resume_study(folder: Path, quiet: bool) -> None:
    """``megasim resume STUDY_DIR``: the study file it was started from, run again."""
    stored = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    source = Path(stored["source"])
    if not source.is_file():
        raise _fail(f"{folder}: its study file {source} is gone; run `megasim study FILE`")
    _run(_load(source), quiet)


def report_study(folder: Path, out: Path | None) -> None:
    """``megasim report STUDY_DIR``: Markdown, cells.parquet and PNG figures."""
    from megasim.study.report import write_report

    try:
        written = write_report(folder, out)
    except (StudyError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    for path in written:
        console.print(f"wrote {path}", highlight=False)
