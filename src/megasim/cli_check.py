"""``megasim check CONFIG`` and the brief preflight at the start of ``megasim run``.

Probes every ``openai`` endpoint (``megasim.model.preflight``), prints one table per
model, and exits 1 naming the endpoint and the problem when a run would fail.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from megasim.config import ConfigError, SimulationConfig, load_config
from megasim.model.config import OpenAIModelConfig
from megasim.model.preflight import CHECKS, EndpointReport, PreflightResult, preflight

EXIT_FAILED = 1
EXIT_USAGE = 2
_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
_SHORT = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "-"}


def _cell(report: EndpointReport, name: str) -> str:
    check = report.checks.get(name)
    if check is None:
        return "[dim]-[/]"
    return f"[{_STYLE[check.status]}]{_SHORT[check.status]}[/] {escape(check.detail)}"


def _throughput(report: EndpointReport) -> str:
    t = report.throughput
    if not t:
        return "[dim]- (--throughput)[/]"
    return (
        f"{t['calls_per_s']:g} calls/s, {t['tokens_per_s']:g} tokens/s "
        f"({t['concurrency']} in flight, {t['seconds']:g} s, {t['errors']:g} errors)"
    )


def model_tables(result: PreflightResult) -> list[Table]:
    """One table per model: a row per check, a column per endpoint."""
    by_model: dict[str, list[EndpointReport]] = defaultdict(list)
    for report in result.endpoints:
        by_model[report.model].append(report)
    tables = []
    for model, reports in by_model.items():
        served = reports[0].served_name
        table = Table(title=f"model {model} ({served})", box=box.SIMPLE_HEAD, show_lines=False)
        table.add_column("check", no_wrap=True)
        for report in reports:
            table.add_column(report.base_url, overflow="fold")
        for name in CHECKS:
            table.add_row(name.replace("_", " "), *(_cell(r, name) for r in reports))
        table.add_row(
            "latency",
            *(f"{r.latency_s:.3f} s" if r.latency_s is not None else "-" for r in reports),
        )
        table.add_row("max n", *(str(r.max_n) if r.max_n else "-" for r in reports))
        table.add_row("throughput", *(_throughput(r) for r in reports))
        tables.append(table)
    return tables


def print_result(result: PreflightResult, console: Console) -> None:
    for table in model_tables(result):
        console.print(table)
    verdict = "[green]ok[/]" if result.ok else f"[bold red]{len(result.problems)} problem(s)[/]"
    console.print(f"preflight {verdict} in {result.elapsed_s:.2f} s", highlight=False)


def openai_models(cfg: SimulationConfig, names: set[str] | None = None) -> list[str]:
    """The configured ``openai`` models among ``names`` (None: all)."""
    return sorted(
        name
        for name, model in cfg.models.items()
        if isinstance(model, OpenAIModelConfig) and (names is None or name in names)
    )


def used_models(cfg: SimulationConfig) -> set[str]:
    """The models some agent of this run uses (the population decides)."""
    from megasim.run import build_population
    from megasim.runtime.local import models_used

    return models_used(build_population(cfg))


def run_preflight(
    cfg: SimulationConfig, console: Console, err_console: Console, quiet: bool = False
) -> dict[str, Any] | None:
    """The brief preflight of ``megasim run``: the run's ``openai`` models only, no
    throughput. Returns the report for the run directory (None: nothing to check);
    raises ``typer.Exit(1)`` naming each problem when the run would fail."""
    if not openai_models(cfg):
        return None  # local, surrogate, scripted: nothing to probe, no population sampled
    names = openai_models(cfg, used_models(cfg))
    if not names:
        return None
    result = asyncio.run(preflight(cfg.models, names))
    if not quiet or not result.ok:
        print_result(result, console)
    if not result.ok:
        for problem in result.problems:
            err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
        err_console.print("the run would fail; fix the config or skip with --no-preflight")
        raise typer.Exit(EXIT_FAILED)
    return result.to_json()


def check(
    config: Annotated[Path, typer.Argument(help="YAML run configuration")],
    throughput: Annotated[
        bool, typer.Option(help="also measure calls/s with small concurrent calls")
    ] = False,
    seconds: Annotated[float, typer.Option(help="length of the throughput measurement")] = 5.0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the report as JSON here")
    ] = None,
) -> None:
    """Probe every configured openai endpoint: reachable, key, model name, n, JSON schema,
    seed, max_tokens, latency (and --throughput). Exit 1 when a run would fail."""
    console, err_console = Console(), Console(stderr=True)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    names = openai_models(cfg)
    if not names:
        console.print(f"{config}: no openai models to check (local backends need no network)")
        return
    result = asyncio.run(preflight(cfg.models, names, seconds if throughput else None))
    print_result(result, console)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        console.print(f"report: {output}", highlight=False)
    if not result.ok:
        for problem in result.problems:
            err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED)
