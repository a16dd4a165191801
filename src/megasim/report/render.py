"""Terminal report of a run: rich tables, PNG plots and a machine-readable summary.json."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from megasim.report.models import ModelInfo, load_models, stand_in_warning
from megasim.report.plots import write_plots
from megasim.report.summary import (
    BREAKDOWN_KEYS,
    BreakdownRow,
    RoundStats,
    breakdown,
    load_game,
    round_table,
    run_scenario,
    summary_payload,
)

_TITLES = {"model": "By model", "group": "By group", "prompt_variant": "By prompt variant"}
_KEY_HEADERS = {"model": "Model", "group": "Group", "prompt_variant": "Variant"}

# Widest cell a numeric column must show without truncation: 7-digit counts (a
# million-agent round) and values such as "100.00".
_COUNT_WIDTH = 7
_VALUE_WIDTH = 6


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _table(title: str, caption: str | None = None) -> Table:
    """A compact table: header rule only, no outer edge, two spaces between columns.

    Nine numeric columns of 7-digit counts and "100.00" values then fit in 80 chars.
    """
    return Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        title_justify="left",
        caption_justify="left",
    )


def _num(table: Table, header: str, width: int) -> None:
    """Right-aligned numeric column that never wraps and reserves room for its numbers."""
    table.add_column(header, justify="right", no_wrap=True, min_width=width)


def guesses_table(
    rounds: Sequence[RoundStats], title: str = "Guesses", with_winner: bool = True
) -> Table:
    """Per-round guess statistics pooled over every group (winner over all groups together).

    Min, max and quartiles do not fit an 80-column terminal; they are in summary.json.
    """
    table = _table(title, caption="min, max, q25, q75: see summary.json")
    _num(table, "Round", 3)
    for h in ("N", "Valid", "Invalid", "Errors"):
        _num(table, h, _COUNT_WIDTH if h in ("N", "Valid") else 3)
    for h in ("Mean", "Median", "Std", *(("Winner",) if with_winner else ())):
        _num(table, h, _VALUE_WIDTH)
    for r in rounds:
        cells = [str(r.step), str(r.n), str(r.valid), str(r.invalid), str(r.errors)]
        cells += [_f(r.mean), _f(r.median), _f(r.std)]
        table.add_row(*cells, *([_f(r.winner)] if with_winner else []))
    return table


def cost_table(rounds: Sequence[RoundStats], title: str = "Cost") -> Table:
    """Per-round token totals and median model latency."""
    table = _table(title)
    _num(table, "Round", 3)
    _num(table, "Tokens in", 11)
    _num(table, "Tokens out", 11)
    _num(table, "p50 latency ms", 9)
    for r in rounds:
        table.add_row(str(r.step), f"{r.tokens_in:,}", f"{r.tokens_out:,}", _f(r.latency_p50_ms))
    return table


def rounds_table(rounds: Sequence[RoundStats], title: str = "Guesses") -> Table:
    """Backwards-compatible name of :func:`guesses_table`."""
    return guesses_table(rounds, title=title)


def models_table(models: Mapping[str, ModelInfo]) -> Table:
    """Every model whose answers the report shows, with its backend and what that is."""
    table = _table("Models")
    for header in ("Model", "Backend", "Kind", "Answers from"):
        table.add_column(header, justify="left", overflow="fold")
    for info in models.values():
        kind = f"[bold red]{info.kind}[/]" if info.stand_in else info.kind
        table.add_row(escape(info.name), info.backend, kind, escape(info.detail))
    return table


def breakdown_table(
    by: str, rows: Sequence[BreakdownRow], models: Mapping[str, ModelInfo] | None = None
) -> Table:
    """Per-round, per-key table; the Winner column appears only for groups (own games).

    The key column folds long names (e.g. ``org/model-name``) instead of truncating them;
    by model, each name carries its backend (``fast (surrogate: non-LLM stand-in)``).
    """
    table = _table(_TITLES.get(by, f"By {by}"))
    _num(table, "Round", 3)
    table.add_column(
        _KEY_HEADERS.get(by, by.replace("_", " ").capitalize()),
        justify="left",
        overflow="fold",
        min_width=8,
    )
    models = models or {}
    # Counts sized by content here, leaving the key column room for long model names.
    _num(table, "N", 5)
    _num(table, "Valid", 5)
    for h in ("Mean", "Median", "Std"):
        _num(table, h, _VALUE_WIDTH)
    with_winner = by == "group" and any(r.winner is not None for r in rows)
    if with_winner:
        _num(table, "Winner", _VALUE_WIDTH)
    for r in rows:
        info = models.get(r.key) if by == "model" else None
        key = info.label if info is not None else r.key
        cells = [str(r.step), key, str(r.n), str(r.valid), _f(r.mean), _f(r.median), _f(r.std)]
        table.add_row(*cells, *([_f(r.winner)] if with_winner else []))
    return table


def scenario_report(run_dir: Path, out: Path, console: Console) -> list[Path]:
    """The run's scenario's own tables and plots (its ``report`` hook)."""
    if not (run_dir / "config.yaml").is_file():
        return []
    scenario, _ = run_scenario(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    return list(scenario.report(run_dir, out, console))


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
    used = sorted({r.key for r in breakdowns["model"]})
    configured = load_models(run_dir, used)
    models = {name: configured[name] for name in used}

    warning = stand_in_warning(models.values())
    if warning is not None:
        console.print(f"[bold red]{escape(warning)}[/]", soft_wrap=True)
    if game.scored:
        console.print(
            f"[bold]Rounds of {escape(run_dir.name)}[/bold]: winning number = "
            f"{game.ratio:.4g} × mean + {game.offset:g}, all groups pooled"
        )
        console.print(guesses_table(rounds))
    else:
        console.print(f"[bold]Steps of {escape(run_dir.name)}[/bold]: {escape(game.label.lower())}")
        console.print(guesses_table(rounds, title=game.label, with_winner=False))
    console.print(models_table(models))
    console.print(cost_table(rounds))
    for by, rows in breakdowns.items():
        if len({r.key for r in rows}) > 1:
            console.print(breakdown_table(by, rows, models))

    paths = write_plots(run_dir, out)
    paths += scenario_report(run_dir, out, console)
    summary = out / "summary.json"
    payload = summary_payload(run_dir, rounds, breakdowns)
    payload["models"] = {name: info.as_json() for name, info in models.items()}
    payload["stand_in_models"] = [name for name, info in models.items() if info.stand_in]
    payload["warning"] = warning
    for row in payload["breakdowns"]["model"]:
        row["backend"] = models[row["key"]].backend
    summary.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths.append(summary)
    # soft_wrap: a long path is left whole for the terminal to wrap (copy-pasteable).
    console.print(
        f"Plots ({len(paths) - 1} PNG) and summary.json written to [bold]{escape(str(out))}[/bold]",
        soft_wrap=True,
    )
    return paths
