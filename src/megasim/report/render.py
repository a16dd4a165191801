"""Terminal report of a run: rich tables, PNG plots and a machine-readable summary.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from megasim.report.plots import write_plots
from megasim.report.summary import (
    BREAKDOWN_KEYS,
    BreakdownRow,
    RoundStats,
    breakdown,
    load_game,
    round_table,
    summary_payload,
)

_TITLES = {"model": "By model", "group": "By group", "prompt_variant": "By prompt variant"}


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def rounds_table(rounds: Sequence[RoundStats], title: str = "Rounds") -> Table:
    """The pooled per-round table (winner over all groups together)."""
    table = Table(title=title)
    headers = ["Round", "N", "Valid", "Invalid", "Errors", "Mean", "Median", "Std", "Min", "Max"]
    headers += ["Winner", "Tokens in", "Tokens out", "p50 ms"]
    for h in headers:
        table.add_column(h, justify="right")
    for r in rounds:
        table.add_row(
            str(r.step),
            str(r.n),
            str(r.valid),
            str(r.invalid),
            str(r.errors),
            _f(r.mean),
            _f(r.median),
            _f(r.std),
            _f(r.min),
            _f(r.max),
            _f(r.winner),
            str(r.tokens_in),
            str(r.tokens_out),
            _f(r.latency_p50_ms, 0),
        )
    return table


def breakdown_table(by: str, rows: Sequence[BreakdownRow]) -> Table:
    """Per-round, per-key table; the Winner column appears only for groups (own games)."""
    table = Table(title=_TITLES.get(by, f"By {by}"))
    table.add_column("Round", justify="right")
    table.add_column(by.replace("_", " ").capitalize(), justify="left")
    for h in ["N", "Valid", "Mean", "Median", "Std"]:
        table.add_column(h, justify="right")
    with_winner = by == "group"
    if with_winner:
        table.add_column("Winner", justify="right")
    for r in rows:
        cells = [str(r.step), r.key, str(r.n), str(r.valid), _f(r.mean), _f(r.median), _f(r.std)]
        table.add_row(*cells, *([_f(r.winner)] if with_winner else []))
    return table


def render_report(run_dir: Path, console: Console, out_dir: Path | None = None) -> list[Path]:
    """Print the run's tables, write plots and ``summary.json``; return every file written.

    Breakdown tables are printed only when their key has more than one value (a single
    model's breakdown would repeat the rounds table); summary.json always has all three.
    Files go to ``out_dir`` (default ``run_dir / "report"``); summary.json comes last.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    game = load_game(run_dir)
    rounds = round_table(run_dir)
    breakdowns: dict[str, list[BreakdownRow]] = {k: breakdown(run_dir, k) for k in BREAKDOWN_KEYS}

    console.print(
        rounds_table(
            rounds,
            title=f"Rounds of {run_dir.name} "
            f"(winning = {game.ratio:.4g} × mean + {game.offset:g}, all groups pooled)",
        )
    )
    for by, rows in breakdowns.items():
        if len({r.key for r in rows}) > 1:
            console.print(breakdown_table(by, rows))

    paths = write_plots(run_dir, out)
    summary = out / "summary.json"
    payload = summary_payload(run_dir, rounds, breakdowns)
    summary.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths.append(summary)
    console.print(f"Plots ({len(paths) - 1} PNG) and summary.json written to [bold]{out}[/bold]")
    return paths
