"""``megasim population ...``: sample personas from a spec and check the marginals."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

population_app = typer.Typer(help="Diverse populations: sample personas, check marginals.")
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
    tolerance: Annotated[float, typer.Option(help="allowed deviation of proportions")] = 0.02,
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
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    console.print(f"sampled {table.num_rows:,} agents in {elapsed:.2f} s -> [bold]{out}[/]")
    checks = check_marginals(table, loaded, tolerance=tolerance)
    render_checks(checks, console)
    failed = [c for c in checks if not c.passed]
    if check and failed:
        names = ", ".join(sorted({c.label for c in failed}))
        err_console.print(f"[bold red]marginals off target[/] (tolerance {tolerance}): {names}")
        raise typer.Exit(1)
