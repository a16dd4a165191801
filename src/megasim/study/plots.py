"""Convergence figures: the mean answer by round, one line per cell, one PNG per prompt
and per model; published means (reference.yaml) dashed beside ours. Stand-in models get a
red "NOT LLM BEHAVIOUR" title, as in run reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from megasim.study.reference import Reference


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def convergence_plot(
    rows: list[dict[str, Any]], by: str, value: str, reference: Reference, out: Path
) -> Path:
    """Mean by round of every cell whose ``by`` column equals ``value``."""
    chosen = [r for r in rows if str(r[by]) == value]
    fig = Figure(figsize=(10, 4.2))  # no pyplot: no GUI backend, no global state
    ax = fig.subplots()
    cells = sorted({r["cell"] for r in chosen})
    shown: set[str] = set()
    for cell in cells:
        own = sorted((r for r in chosen if r["cell"] == cell), key=lambda r: r["round"])
        points = [(r["round"], r["mean"]) for r in own if r["mean"] is not None]
        if not points:
            continue
        first = own[0]
        label = f"{cell} ({first['model']}, {first['backend']})"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        for entry in reference.entries:
            if entry.id in shown or not entry.matches(
                first["prompt"], first["ratio"], first["offset"]
            ):
                continue
            shown.add(entry.id)
            rounds = list(range(1, len(entry.means) + 1))
            ax.plot(
                rounds, entry.means, linestyle="--", marker="x", label=f"published: {entry.model}"
            )
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean of valid answers")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    stand_in = any(r["stand_in"] for r in chosen)
    title = f"Mean answer by round, {by} {value}"
    if stand_in:
        title = "NOT LLM BEHAVIOUR (stand-in model)\n" + title
    ax.set_title(title, color="red" if stand_in else "black", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # never over lines
    models = sorted({f"{r['model']} ({r['backend']})" for r in chosen})
    fig.text(0.01, 0.01, "models: " + ", ".join(models), fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"convergence-{by}-{_slug(value)}.png"
    fig.savefig(path, dpi=110)
    return path


def lines_plot(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    axes: tuple[str, str],
    stand_in: bool,
    models: list[str],
    path: Path,
) -> Path:
    """One line per series (label -> points): the attribute, temperature and scalability
    figures. ``stand_in``: a red NOT LLM BEHAVIOUR title, as everywhere."""
    fig = Figure(figsize=(10, 4.2))
    ax = fig.subplots()
    for label, points in series.items():
        points = sorted(p for p in points if p[1] is not None)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    xs = [p[0] for points in series.values() for p in points]
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 100:
        ax.set_xscale("log")  # agent counts from thousands to a million
    if axes[0] == "round":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.grid(alpha=0.3)
    if stand_in:
        title = "NOT LLM BEHAVIOUR (stand-in model)\n" + title
    ax.set_title(title, color="red" if stand_in else "black", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.text(0.01, 0.01, "models: " + ", ".join(models), fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
