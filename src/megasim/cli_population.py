"""``megasim population ...``: sample personas, check the marginals, write backgrounds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from megasim.population.backgrounds import BackgroundReport

population_app = typer.Typer(
    help="Diverse populations: sample personas, check marginals, write backgrounds."
)
console = Console()
err_console = Console(stderr=True)


@population_app.command("sample")
def sample(
    spec: Annotated[Path, typer.Argument(help="population spec (YAML)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output Parquet file")],
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    size: Annotated[int | None, typer.Option(help="override the spec's size")] = None,
    model: Annotated[str, typer.Option(help="model for agents the spec gives none")] = "smollm2",
    variant: Annotated[str, typer.Option(help="prompt variant when the spec gives none")] = "P1",
    check: Annotated[bool, typer.Option(help="exit 1 if a marginal misses its target")] = False,
    tolerance: Annotated[
        float, typer.Option(min=0, help="allowed deviation of proportions")
    ] = 0.02,
) -> None:
    """Sample SPEC into a Parquet file (one row per agent) and print achieved vs target."""
    import pyarrow.parquet as pq

    from megasim.population import (
        PopulationSpecError,
        check_marginals,
        load_population_spec,
        render_checks,
        sample_population,
    )

    try:
        loaded = load_population_spec(spec)
        started = time.perf_counter()
        defaults = {"model": model, "prompt_variant": variant}
        table = sample_population(loaded, seed=seed, size=size, defaults=defaults)
    except PopulationSpecError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    elapsed = time.perf_counter() - started
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
    except OSError as exc:  # a folder, a read-only or missing place, a full disk
        err_console.print(f"[bold red]error:[/] --out: cannot write {out}: {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"sampled {table.num_rows:,} agents in {elapsed:.2f} s -> [bold]{out}[/]")
    checks = check_marginals(table, loaded, tolerance=tolerance)
    render_checks(checks, console)
    failed = [c for c in checks if not c.passed]
    if check and failed:
        names = ", ".join(sorted({c.label for c in failed}))
        err_console.print(f"[bold red]marginals off target[/] (tolerance {tolerance}): {names}")
        raise typer.Exit(1)


@population_app.command("backgrounds")
def backgrounds(
    population: Annotated[Path, typer.Argument(help="population Parquet file")],
    model: Annotated[str, typer.Option(help="a name from --models-config, or local | scripted")],
    models_config: Annotated[
        Path | None, typer.Option(help="YAML with named models (a run config's models:)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output Parquet (default: in place)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed; each call's is derived from it")] = 0,
    retries: Annotated[int, typer.Option(min=0, help="new attempts after a rejection")] = 2,
    limit: Annotated[int | None, typer.Option(min=1, help="do at most N agents now")] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="calls/s for the time estimate")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="start without asking")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Let an LLM write each agent's background, consistent with its attributes.

    Adds background, background_json, background_status (ok | rejected | pending),
    background_error, background_model and background_attempts. Progress goes to
    OUT.backgrounds.jsonl as it happens: run the same command again to resume.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from megasim.model.base import ModelSetupError
    from megasim.model.factory import build_model
    from megasim.population.backgrounds import (
        BackgroundModelError,
        generate_backgrounds,
        merge_backgrounds,
        pending_agents,
        row_attributes,
        sidecar_path,
        write_parquet_atomic,
    )
    from megasim.population.backgrounds_models import (
        BackgroundSetupError,
        concurrency_for,
        default_rate,
        estimate_run,
        load_models_config,
        resolve_model,
    )

    def fail(message: str, code: int) -> typer.Exit:
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        return typer.Exit(code)

    try:
        configs = load_models_config(models_config) if models_config is not None else None
        config = resolve_model(model, configs)
    except BackgroundSetupError as exc:
        raise fail(str(exc), 2) from None
    try:
        table = pq.read_table(population)
    except (OSError, pa.ArrowInvalid) as exc:
        raise fail(f"{population}: cannot read: {exc}", 2) from None
    if "agent_id" not in table.column_names:
        raise fail(f"{population}: no agent_id column (sample it with `population sample`)", 2)
    target = out if out is not None else population
    sidecar = sidecar_path(target)
    pending = pending_agents(table, sidecar)
    todo = int(pending.sum()) if limit is None else min(limit, int(pending.sum()))
    if todo:
        calls_per_s = rate if rate is not None else default_rate(config)
        estimate = estimate_run(todo, row_attributes(table, int(pending.argmax())), calls_per_s)
        console.print(f"model {model} (backend {config.backend})", highlight=False)
        for line in estimate.lines(calls_per_s):
            console.print(line, highlight=False)
        if not yes:
            typer.confirm("Start?", abort=True)
        try:
            client = build_model(model, config)
        except ModelSetupError as exc:
            raise fail(f"model setup failed: {exc}", 1) from None
        progress = Progress(
            TextColumn("[bold]backgrounds"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("ok {task.fields[ok]} rejected {task.fields[rejected]}"),
            console=console,
            disable=quiet,
        )
        task = progress.add_task("backgrounds", total=todo, ok=0, rejected=0)

        def on_progress(report: BackgroundReport) -> None:
            progress.update(task, completed=report.finished, ok=report.ok, rejected=report.rejected)

        async def go() -> BackgroundReport:
            try:
                return await generate_backgrounds(
                    table,
                    client,
                    seed=seed,
                    retries=retries,
                    sidecar=sidecar,
                    progress=on_progress,
                    limit=limit,
                    concurrency=concurrency_for(config),
                )
            finally:
                await client.aclose()

        try:
            with progress:
                report = asyncio.run(go())
        except KeyboardInterrupt:
            raise fail(
                f"interrupted; progress is kept in {sidecar}: run again to resume", 130
            ) from None
        except BackgroundModelError as exc:
            raise fail(f"{exc}; progress is kept in {sidecar}: run again to resume", 1) from None
        console.print(summary_table(report))
    elif not sidecar.exists() and target == population:
        console.print("nothing to do: every agent has a background")
        return
    merged = merge_backgrounds(table, sidecar)
    write_parquet_atomic(merged, target)
    statuses = merged.column("background_status").to_pylist()
    left = statuses.count("pending")
    if left == 0:
        sidecar.unlink(missing_ok=True)  # everything is in the Parquet file now
    console.print(
        f"{statuses.count('ok'):,} ok, {statuses.count('rejected'):,} rejected, "
        f"{left:,} pending -> [bold]{target}[/]",
        highlight=False,
    )
    if left:
        console.print(f"run the same command again to continue ({sidecar} keeps the progress)")


def summary_table(report: BackgroundReport) -> Table:
    """This run's counts: agents, calls, retries, near-duplicates, tokens, time."""
    table = Table(title="Backgrounds (this run)")
    table.add_column("")
    table.add_column("count", justify="right")
    rows: dict[str, int | str] = {
        "ok": report.ok,
        "rejected": report.rejected,
        "no answer (left pending)": report.no_answer,
        "ok with a warning": report.warnings,
        "model calls": report.calls,
        "retries": report.retries,
        "near-duplicates regenerated": report.duplicates,
        "tokens in / out": f"{report.tokens_in:,} / {report.tokens_out:,}",
        "seconds": f"{report.wall_s:.1f}",
    }
    for name, value in rows.items():
        table.add_row(name, f"{value:,}" if isinstance(value, int) else value)
    return table
