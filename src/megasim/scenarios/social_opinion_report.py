"""``megasim report`` for social_opinion: per-step tables and a sampled subgraph picture.

The tables come from metrics.jsonl (each step's combined outcome), so a million-agent
run reports without reading its step files. The picture samples up to ``SAMPLE`` agents
around the most followed account (breadth first over follow ties), colours each by its
last stated stance (step files, DuckDB) and lays the subgraph out with a few hundred
vectorised spring iterations: no per-edge Python objects and no graph library needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from megasim.config import load_stored_config
from megasim.env.network_graph import SocialGraph
from megasim.scenarios.base import settings_of
from megasim.scenarios.social_opinion_settings import SocialSettings
from megasim.store.run_dir import RunDirectory

if TYPE_CHECKING:
    from rich.console import Console

    from megasim.scenarios.social_opinion import SocialOpinion

SAMPLE = 300


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def sample_nodes(graph: SocialGraph, size: int) -> npt.NDArray[np.int64]:
    """Breadth first from the most followed agent over ties both ways, up to ``size``."""
    if graph.agents == 0:
        return np.zeros(0, np.int64)
    start = int(np.argmax(graph.in_degree()))
    seen, frontier = {start}, [start]
    while frontier and len(seen) < size:
        nxt = []
        for node in frontier:
            for other in graph.followees(node).tolist():
                if other not in seen and len(seen) < size:
                    seen.add(other)
                    nxt.append(other)
        frontier = nxt
    return np.array(sorted(seen), dtype=np.int64)


def spring_layout(n: int, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64]) -> Any:
    rng = np.random.default_rng(0)
    pos = rng.random((n, 2))
    k = 1.0 / np.sqrt(max(n, 1))
    for t in np.linspace(0.1, 0.005, 200):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.maximum(np.linalg.norm(delta, axis=2), 1e-4)
        force = (delta / dist[..., None] * (k * k / dist)[..., None]).sum(axis=1)
        pull = pos[src] - pos[dst]
        length = np.maximum(np.linalg.norm(pull, axis=1), 1e-4)[:, None]
        spring = pull * length / k
        np.add.at(force, src, -spring)
        np.add.at(force, dst, spring)
        step = np.maximum(np.linalg.norm(force, axis=1), 1e-9)[:, None]
        pos += force / step * np.minimum(step, t)
    return pos


def subgraph_picture(scenario: SocialOpinion, run_dir: Path, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = load_stored_config(run_dir / "config.yaml")
    settings = settings_of(config, SocialSettings)
    population = pq.read_table(run_dir / "population.parquet")
    env = scenario.network(settings, config.seed, 1, population)
    nodes = sample_nodes(env.graph, SAMPLE)
    if nodes.size == 0:
        return None
    files = sorted(str(p) for p in (run_dir / "steps").glob("step=*/*.parquet"))
    stance: dict[int, float] = {}
    if files:
        rows = (
            duckdb.connect(":memory:")
            .execute(
                "SELECT agent_id, arg_max(value, step) FROM "
                "read_parquet(?, hive_partitioning = false) WHERE value IS NOT NULL "
                "GROUP BY agent_id",
                [files],
            )
            .fetchall()
        )
        stance = {int(a): float(v) for a, v in rows}
    local = {int(node): i for i, node in enumerate(nodes.tolist())}
    src, dst = [], []
    for node in nodes.tolist():
        for other in env.graph.followees(node).tolist():
            if other in local:
                src.append(local[node])
                dst.append(local[other])
    pos = spring_layout(nodes.size, np.array(src, np.int64), np.array(dst, np.int64))
    colour = [stance.get(int(env.ids[n]), np.nan) for n in nodes.tolist()]
    fig, ax = plt.subplots(figsize=(7, 7))
    for a, b in zip(src, dst, strict=True):
        ax.plot(*zip(pos[a], pos[b], strict=True), color="#bbbbbb", linewidth=0.4, zorder=1)
    dots = ax.scatter(
        pos[:, 0],
        pos[:, 1],
        c=colour,
        cmap="coolwarm",
        vmin=0,
        vmax=100,
        s=18,
        zorder=2,
        plotnonfinite=True,
    )
    fig.colorbar(dots, ax=ax, label="last stated stance (grey: never active)")
    ax.set_title(f"{nodes.size} agents around the most followed account")
    ax.set_axis_off()
    path = out / "social_subgraph.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def social_report(
    scenario: SocialOpinion, run_dir: Path, out_dir: Path, console: Console
) -> list[Path]:
    from rich.table import Table

    metrics = [m for m in RunDirectory(run_dir).read_metrics() if "outcome" in m]
    steps = Table(title="Stance per step")
    for title in (
        "step",
        "active",
        "mean",
        "variance",
        "bimodality",
        "assortativity",
        "same-side feed",
        "histogram (10 bins, 0-100)",
    ):
        steps.add_column(title)
    for m in metrics:
        o = m["outcome"]
        steps.add_row(
            str(m["step"]),
            str(m.get("active", m.get("agents"))),
            _fmt(o.get("mean"), 1),
            _fmt(o.get("variance"), 1),
            _fmt(o.get("bimodality")),
            _fmt(o.get("assortativity")),
            _fmt(o.get("same_side_share")),
            " ".join(str(v) for v in o.get("histogram", [])),
        )
    console.print(steps)
    if metrics:
        last = metrics[-1]["outcome"]
        echo = Table(title=f"Echo chambers per community (step {metrics[-1]['step']})")
        for title in ("community", "active", "mean", "std", "feed items", "same-side share"):
            echo.add_column(title)
        for c in last.get("communities", []):
            echo.add_row(
                str(c["community"]),
                str(c["n"]),
                _fmt(c["mean"], 1),
                _fmt(c["std"], 1),
                str(c["feed_items"]),
                _fmt(c["same_side_share"]),
            )
        console.print(echo)
        actions = Table(title="Actions per step")
        actions.add_column("step")
        names = list(last.get("actions", {}))
        for name in names:
            actions.add_column(name)
        for m in metrics:
            acts = m["outcome"].get("actions", {})
            actions.add_row(str(m["step"]), *(str(acts.get(n, 0)) for n in names))
        console.print(actions)
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = subgraph_picture(scenario, run_dir, out_dir)
    return [picture] if picture is not None else []
