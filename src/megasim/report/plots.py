"""PNG plots of a run: one answer histogram per round and a convergence chart.

Histograms are binned inside DuckDB (floor-binning + GROUP BY), so only ``bins`` counts
per round reach Python, however many agents played. Figures are built with the
object-oriented ``matplotlib.figure.Figure`` API and never touch pyplot: no GUI backend
is needed, no global figure registry grows, and the caller's own backend is left alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from megasim.report.models import ModelInfo, load_models, stand_in_warning
from megasim.report.summary import (
    BreakdownRow,
    GameParams,
    RoundStats,
    breakdown,
    connect,
    load_game,
    query,
    round_table,
)


def default_bins(game: GameParams) -> int:
    """Unit-wide bins for integer ranges up to 200 (LLM guesses are mostly integers), else 50."""
    span = game.high - game.low
    return int(span) if span == int(span) and 0 < span <= 200 else 50


def histogram_counts(
    run_dir: Path, game: GameParams | None = None, bins: int | None = None
) -> dict[int, NDArray[np.int64]]:
    """Counts of valid answers per round over ``bins`` equal bins spanning [low, high].

    Bins are half-open like ``numpy.histogram`` with the last one closed; answers outside
    [low, high] are clamped into the edge bins so the bar total equals the valid count.
    """
    game = game or load_game(run_dir)
    bins = bins or default_bins(game)
    if game.high <= game.low:
        raise ValueError(f"game.high ({game.high}) must exceed game.low ({game.low})")
    width = (game.high - game.low) / bins
    sql = """
        SELECT step,
               least(greatest(floor((value - $low) / $width), 0), $bins - 1)::INTEGER AS b,
               count(*)
        FROM decisions
        WHERE valid AND value IS NOT NULL AND isfinite(value)
        GROUP BY ALL ORDER BY ALL
    """
    con = connect(run_dir)
    try:
        steps = [int(s) for (s,) in query(con, "SELECT DISTINCT step FROM decisions ORDER BY 1")]
        rows = query(con, sql, {"low": game.low, "width": width, "bins": bins})
    finally:
        con.close()
    counts = {step: np.zeros(bins, dtype=np.int64) for step in steps}
    for step, b, c in rows:
        counts[int(step)][int(b)] = int(c)
    return counts


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def _label_models(fig: Figure, models: dict[str, ModelInfo]) -> None:
    """Every plot names its models' backends; stand-in answers get a red warning on top."""
    names = "; ".join(info.label for info in models.values())
    fig.supxlabel(f"models: {names}", fontsize="small")  # laid out below the axes
    warning = stand_in_warning(models.values())
    if warning is not None:
        fig.suptitle(warning, color="red", fontweight="bold", fontsize="medium")


def _histogram_png(
    path: Path,
    stats: RoundStats,
    counts: NDArray[np.int64],
    game: GameParams,
    models: dict[str, ModelInfo],
) -> Path:
    edges = np.linspace(game.low, game.high, len(counts) + 1)
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    _label_models(fig, models)
    ax = fig.subplots()
    ax.stairs(counts, edges, fill=True, alpha=0.75, label="answers")
    if stats.winner is not None:
        ax.axvline(stats.winner, color="red", linewidth=2, label=f"winning {stats.winner:.2f}")
    if stats.mean is not None:
        ax.axvline(stats.mean, color="black", linestyle="--", label=f"mean {stats.mean:.2f}")
    ax.set_xlim(game.low, game.high)
    ax.set_xlabel("answer")
    ax.set_ylabel("agents")
    ax.set_title(
        f"Round {stats.step}: N={stats.n} ({stats.valid} valid), "
        f"median {_fmt(stats.median)}, winning number {_fmt(stats.winner)}"
    )
    ax.legend(loc="upper right")
    return _save(fig, path)


def _convergence_png(
    path: Path,
    rounds: list[RoundStats],
    by_model: list[BreakdownRow],
    game: GameParams,
    models: dict[str, ModelInfo],
) -> Path:
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    _label_models(fig, models)
    ax = fig.subplots()
    nan = float("nan")
    steps = [r.step for r in rounds]

    def col(values: list[float | None]) -> list[float]:
        return [nan if v is None else v for v in values]

    ax.fill_between(
        steps, col([r.q25 for r in rounds]), col([r.q75 for r in rounds]), alpha=0.2, label="IQR"
    )
    ax.plot(steps, col([r.mean for r in rounds]), marker="o", label="mean (all)")
    ax.plot(steps, col([r.median for r in rounds]), marker="s", label="median (all)")
    ax.plot(steps, col([r.winner for r in rounds]), marker="^", color="red", label="winning")
    names = sorted({row.key for row in by_model})
    if len(names) > 1:
        # Default colour cycle minus the blue/orange/red already used by the pooled lines.
        palette = [f"C{i}" for i in (2, 4, 5, 6, 7, 8, 9)]
        for i, model in enumerate(names):
            rows = [row for row in by_model if row.key == model]
            ax.plot(
                [row.step for row in rows],
                col([row.mean for row in rows]),
                linestyle="--",
                marker=".",
                color=palette[i % len(palette)],
                label=f"mean {models[model].label}",
            )
    ax.set_ylim(game.low, game.high)
    ax.set_xticks(steps)
    ax.set_xlabel("round")
    ax.set_ylabel("answer")
    if game.scored:
        ax.set_title(f"Convergence (winning = {game.ratio:.3g} × mean + {game.offset:g})")
    else:
        ax.set_title("Opinions over steps")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def write_plots(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write ``round_<n>_hist.png`` per round plus ``convergence.png``; return their paths.

    ``out_dir`` defaults to ``run_dir / "report"`` and is created if needed. The lines drawn
    are the pooled winning number; per-group winners live in ``breakdown(..., "group")``.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    game = load_game(run_dir)
    rounds = round_table(run_dir)
    counts = histogram_counts(run_dir, game)
    by_model = breakdown(run_dir, "model")
    used = sorted({row.key for row in by_model})
    configured = load_models(run_dir, used)
    models = {name: configured[name] for name in used}
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        _histogram_png(out / f"round_{r.step}_hist.png", r, counts[r.step], game, models)
        for r in rounds
    ]
    paths.append(_convergence_png(out / "convergence.png", rounds, by_model, game, models))
    return paths
