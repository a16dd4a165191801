"""Command line: ``megasim run``, ``megasim report``, ``megasim population ...``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from megasim import cli_studio, cli_study
from megasim.cli_check import check as check_command
from megasim.cli_population import population_app
from megasim.config import ConfigError, SimulationConfig, inapplicable_settings, load_config
from megasim.model.base import ModelSetupError
from megasim.plugins import ScenarioLoadError, load_scenario_class
from megasim.runtime.base import ProgressFn
from megasim.simulation import StepListener, StepOutcome
from megasim.store.run_dir import RunDirectoryError

app = typer.Typer(
    help="Very large-scale multi-agent simulation with LLM-powered agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
app.add_typer(population_app, name="population")
app.command("check")(check_command)

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def warn_inapplicable(cfg: SimulationConfig, source: Path) -> None:
    """Settings this run ignores (harmless ones; the others failed validation)."""
    for note in inapplicable_settings(cfg):
        err_console.print(f"[bold yellow]warning:[/] {source}: {note}", highlight=False)


def _fmt(value: object, digits: int = 2) -> str:
    return (
        f"{value:.{digits}f}"
        if isinstance(value, float)
        else ("-" if value is None else str(value))
    )


def summary_table(steps: list[StepOutcome], headline: tuple[str, str] | None = None) -> Table:
    """Per-step counts; ``headline`` (the scenario's): (outcome key, column title) of the
    number it shows per step, such as the game's winning number."""
    # compact (no vertical rules) and never truncated: a million-agent row fits 80 columns
    table = Table(title="Rounds", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ["round", "agents", "valid", "invalid", "errors", "mean"]
    columns += [headline[1]] if headline else []
    for column in (*columns, "tokens", "s"):
        table.add_column(column, justify="right", no_wrap=True)
    for s in steps:
        o, m = s.outcome, s.metrics
        extra = [_fmt(o.get(headline[0]))] if headline else []
        table.add_row(
            str(s.step),
            str(o.get("n")),
            str(o.get("valid")),
            str(m["invalid"]),
            str(m["errors"]),
            _fmt(o.get("mean")),
            *extra,
            str(m["tokens_in"] + m["tokens_out"]),
            _fmt(m["wall_s"]),
        )
    return table


def population_size(cfg: SimulationConfig) -> int:
    """Agents in the run, known before sampling (for the progress bar); 0 if unknown."""
    if cfg.population is not None:
        return cfg.population.size
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(str(cfg.population_file)).metadata.num_rows)
    except (OSError, ValueError):
        return 0  # the run itself reports the unreadable file


def execute(
    cfg: SimulationConfig,
    start: Callable[[ProgressFn, StepListener], Any],
    quiet: bool,
    source: Path,
    done_steps: int = 0,
) -> None:
    """Run ``start`` (a fresh run or a resume) with a progress bar, then print the summary.
    ``done_steps``: steps finished before (a resume's progress starts after them)."""
    agents = population_size(cfg)
    total = agents * cfg.rounds
    progress = Progress(
        TextColumn("[bold]round {task.fields[round]}/" + str(cfg.rounds)),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    first_round = min(done_steps + 1, cfg.rounds)
    finished = [agents * done_steps]
    task = progress.add_task("decisions", total=total, completed=finished[0], round=first_round)
    done_by_shard: dict[int, int] = {}

    def on_progress(shard: int, done: int) -> None:
        done_by_shard[shard] = done
        progress.update(task, completed=finished[0] + sum(done_by_shard.values()))

    def on_step(outcome: StepOutcome) -> None:
        finished[0] += int(outcome.metrics["agents"])
        done_by_shard.clear()
        progress.update(task, completed=finished[0], round=min(outcome.step + 1, cfg.rounds))

    from megasim.run import DiskFullError

    try:
        with progress:
            result = asyncio.run(start(on_progress, on_step))
    except (ConfigError, ScenarioLoadError) as exc:  # the latter: its __init__ failed
        raise fail(f"{source}: {exc}") from None
    except RunDirectoryError as exc:  # a bad or reused run id, a run another driver holds
        raise fail(str(exc)) from None
    except ModelSetupError as exc:
        raise fail(f"model setup failed: {exc}", code=1) from None
    except DiskFullError as exc:  # resumable: the last checkpoint is intact
        raise fail(str(exc), code=1) from None
    except OSError as exc:  # the run directory cannot be written (before the run began)
        raise fail(f"cannot write the run: {exc}", code=1) from None
    except KeyboardInterrupt:
        raise fail("interrupted; continue with `megasim resume RUN`", code=130) from None
    if result.stopped:
        done = result.steps[-1].step if result.steps else 0
        console.print(
            f"stopped on request after step {done}; continue with "
            f"`megasim resume {result.run_dir.path}`",
            highlight=False,
        )
    console.print(summary_table(result.steps, load_scenario_class(cfg.scenario).headline))
    used = sorted({name for s in result.steps for name in s.metrics["models"]})
    from megasim.report.models import STAND_IN_BACKENDS

    for name in used:
        backend = cfg.models[name].backend
        stand_in = backend in STAND_IN_BACKENDS
        note = " (non-LLM stand-in: not LLM behaviour)" if stand_in else ""
        console.print(f"model {name}: backend {backend}{note}", highlight=False)
    console.print(f"run directory: [bold]{result.run_dir.path}[/]")
    console.print(f"report: megasim report {result.run_dir.path}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML run configuration")],
    agents: Annotated[int | None, typer.Option(help="population size")] = None,
    rounds: Annotated[int | None, typer.Option(help="number of rounds")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="model for every agent: a configured name or local|surrogate|scripted"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    runtime: Annotated[str | None, typer.Option(help="local | ray")] = None,
    shards: Annotated[int | None, typer.Option(help="number of agent shards")] = None,
    out: Annotated[Path | None, typer.Option(help="parent directory of runs")] = None,
    run_id: Annotated[str | None, typer.Option(help="name of the run directory")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    preflight: Annotated[
        bool, typer.Option(help="probe the run's openai endpoints first (megasim check)")
    ] = True,
) -> None:
    """Run a simulation; every decision is written under OUT/<run-id>/."""
    from megasim.run import run_simulation

    overrides: dict[str, Any] = {"agents": agents, "rounds": rounds, "model": model, "seed": seed}
    overrides |= {"runtime": runtime, "shards": shards}
    overrides["out"] = str(out) if out is not None else None
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    warn_inapplicable(cfg, config)
    report = None
    if preflight:
        from megasim.cli_check import run_preflight

        try:
            report = run_preflight(cfg, console, err_console, quiet)
        except ConfigError as exc:
            raise fail(f"{config}: {exc}") from None
    execute(cfg, lambda p, s: run_simulation(cfg, p, s, run_id, report), quiet, config)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    runtime: Annotated[
        str | None, typer.Option(help="local | ray (default: the run's own runtime)")
    ] = None,
    shards: Annotated[int | None, typer.Option(help="number of agent shards")] = None,
    address: Annotated[
        str | None, typer.Option(help="ray: 'auto' or HOST:PORT of a cluster to join")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Continue a run after a crash from its last complete step (same results as unbroken),
    on the same or another runtime (the run directory must be reachable from its nodes)."""
    from megasim.run import completed_steps, load_run_config, resume_simulation

    if (run_dir / "study.json").is_file():  # a study folder: continue its cells
        return cli_study.resume_study(run_dir, quiet)

    overrides = {"runtime": runtime, "shards": shards, "address": address}
    source = run_dir / "config.yaml"
    try:
        cfg = load_run_config(run_dir, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    warn_inapplicable(cfg, source)
    done = completed_steps(run_dir)
    execute(cfg, lambda p, s: resume_simulation(run_dir, p, s, overrides), quiet, source, done)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    out: Annotated[Path | None, typer.Option(help="where plots go (default RUN/report)")] = None,
) -> None:
    """Per-round statistics with per-model and per-group breakdowns, and PNG plots."""
    from megasim.report import ReportError, render_report

    if (run_dir / "study.json").is_file():  # a study folder: the study's report
        return cli_study.report_study(run_dir, out)

    try:
        render_report(run_dir, console, out)
    except ReportError as exc:  # named after the run unless the message names a file in it
        message = str(exc)
        raise fail(message if str(run_dir) in message else f"{run_dir}: {message}") from None
    except OSError as exc:  # where the plots go: a file, not writable, a full disk
        where = out if out is not None else run_dir / "report"
        raise fail(f"--out: cannot write the report to {where}: {exc}") from None


app.command()(cli_studio.studio)
app.command()(cli_studio.interview)
app.command()(cli_studio.survey)
app.command()(cli_study.study)


def main() -> None:  # pragma: no cover - console entry point
    app()
