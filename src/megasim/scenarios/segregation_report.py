"""``megasim report`` for segregation runs: the per-step table and a picture of the grid.

The picture shows the grid before step 1 and after the last step done. Before step 1 is
rebuilt from the run's config and population (the placement is a pure function of the
seed); after the last step comes from the latest checkpoint, whose environment snapshot
holds the positions (only the last two checkpoints are kept, so no earlier step).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from megasim.env.grid import GridWorld, decode_positions

if TYPE_CHECKING:
    from rich.console import Console

    from megasim.scenarios.segregation import Segregation


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def step_rows(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per step (step 0: the grid before step 1, when the run has it)."""
    rows: list[dict[str, Any]] = []
    for record in metrics:
        outcome = record.get("outcome") or {}
        if "initial" in outcome:
            rows.append({"step": 0, **outcome["initial"]})
        rows.append({"step": record["step"], **outcome})
    return rows


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Segregation per step")
    for title in ("Step", "Moved", "Lost", "Unhappy", "Same-group share", "Dissimilarity"):
        table.add_column(title, justify="right")
    for row in rows:
        table.add_row(
            str(row["step"]),
            _fmt(row.get("moved")),
            _fmt(row.get("lost")),
            _fmt(row.get("unhappy")),
            _fmt(row.get("same_share")),
            _fmt(row.get("dissimilarity")),
        )
    console.print(table)


def grid_image(grid: GridWorld, positions: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """(height, width) group code per cell, -1 where empty."""
    cells = np.full(grid.geometry.cells, -1, dtype=np.int16)
    cells[positions] = grid.groups
    return cells.reshape(grid.geometry.height, grid.geometry.width)


def draw(grid: GridWorld, panels: list[tuple[str, np.ndarray[Any, Any]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, to_hex
    from matplotlib.patches import Patch

    palette = plt.get_cmap("tab10" if len(grid.labels) <= 10 else "tab20")
    colours: list[str] = ["#ffffff"]
    colours += [to_hex(palette(i)) for i in range(len(grid.labels))]
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.4), squeeze=False)
    for ax, (title, positions) in zip(axes[0], panels, strict=True):
        ax.imshow(
            grid_image(grid, positions) + 1, cmap=cmap, vmin=0, vmax=len(colours) - 1,
            interpolation="nearest",
        )  # fmt: skip
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=colours[i + 1], label=g) for i, g in enumerate(grid.labels)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def final_positions(run_dir: Path) -> tuple[int, np.ndarray[Any, Any]] | None:
    """(step, positions) of the latest checkpoint, if any."""
    from megasim.runtime.checkpoint import CheckpointStore

    store = CheckpointStore(run_dir)
    latest = store.latest()
    if latest is None:
        return None
    step, folder = latest
    snapshot = store.load_driver(folder)["env"]
    return step, decode_positions(snapshot["children"]["grid"]["state"]["positions"])


def write_report(
    scenario: Segregation, run_dir: Path, out_dir: Path, console: Console
) -> list[Path]:
    from megasim.run import load_run_config
    from megasim.store.run_dir import RunDirectory

    run = RunDirectory(Path(run_dir))
    print_table(step_rows(run.read_metrics()), console)
    config = load_run_config(run.path)
    town = scenario.build_env(config, run.read_population())
    panels = [("before step 1", town.grid.positions)]
    final = final_positions(run.path)
    if final is not None:
        panels.append((f"after step {final[0]}", final[1]))
    path = draw(town.grid, panels, Path(out_dir) / "segregation_grid.png")
    console.print(f"grid picture: {path}")
    return [path]
