"""Who lives next to whom: neighbourhood composition and segregation measures, vectorised.

Used on shards (what each agent sees) and on the driver (per-step measures over the
whole grid, exact and independent of sharding). Group codes are small non-negative
integers; ``EMPTY`` and ``OFF_GRID`` mark cells without an agent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from megasim.env.grid_geometry import Cells, Geometry

EMPTY = -1
OFF_GRID = -2
Codes = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]
Counts = npt.NDArray[np.int64]


def cell_groups(positions: Cells, groups: Codes, cells: int) -> Codes:
    """Group code per cell, ``EMPTY`` where nobody lives."""
    grid = np.full(cells, EMPTY, dtype=np.int16)
    grid[positions] = groups
    return grid


def around(geometry: Geometry, grid: Codes, cells: Cells, near: Cells | None = None) -> Codes:
    """(n, size) group codes of each cell's neighbours (``EMPTY``, ``OFF_GRID``);
    ``near``: ``geometry.neighbours(cells)`` if the caller has it already."""
    if near is None:
        near = geometry.neighbours(cells)
    return np.where(near >= 0, grid[np.maximum(near, 0)], OFF_GRID).astype(np.int16)


def same_and_occupied(
    geometry: Geometry, grid: Codes, cells: Cells, groups: Codes
) -> tuple[Counts, Counts]:
    """Per cell: neighbours of group ``groups[i]`` and occupied neighbours in all."""
    codes = around(geometry, grid, cells)
    same = (codes == groups[:, None]).sum(axis=1, dtype=np.int64)
    occupied = (codes >= 0).sum(axis=1, dtype=np.int64)
    return same, occupied


def same_shares(geometry: Geometry, positions: Cells, groups: Codes) -> tuple[Floats, Counts]:
    """Each agent's share of same-group neighbours (NaN when it has none) and their count."""
    grid = cell_groups(positions, groups, geometry.cells)
    same, occupied = same_and_occupied(geometry, grid, positions, groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(occupied > 0, same / np.maximum(occupied, 1), np.nan)
    return share, occupied


def dissimilarity(
    geometry: Geometry, positions: Cells, groups: Codes, n_groups: int, block: int
) -> float | None:
    """Index of dissimilarity over ``block`` x ``block`` tiles, averaged over groups.

    For each group g: half the sum over tiles of |share of g's members in the tile -
    share of everyone else in the tile|; 0 = evenly mixed, 1 = fully apart. With two
    groups this is the classic two-group index (both groups give the same value)."""
    if n_groups < 2 or positions.size == 0:
        return None
    x, y = geometry.xy(positions)
    across = -(-geometry.width // block)
    tiles = (y // block) * across + x // block
    n_tiles = across * -(-geometry.height // block)
    everyone = np.bincount(tiles, minlength=n_tiles).astype(np.float64)
    values = []
    for g in range(n_groups):
        mine = np.bincount(tiles[groups == g], minlength=n_tiles).astype(np.float64)
        rest = everyone - mine
        if mine.sum() == 0 or rest.sum() == 0:
            continue
        values.append(0.5 * float(np.abs(mine / mine.sum() - rest / rest.sum()).sum()))
    return float(np.mean(values)) if values else None


def summary(
    geometry: Geometry,
    positions: Cells,
    groups: Codes,
    labels: list[str],
    block: int,
    threshold: float | None = None,
) -> tuple[dict[str, Any], Floats]:
    """Per-step measures of the whole grid (plain JSON data) and every agent's share.

    ``same_share``: mean over agents with neighbours of their same-group share (Schelling's
    own measure); ``unhappy``: agents whose share is below ``threshold`` (an agent with no
    neighbours minds nobody and counts as content)."""
    share, occupied = same_shares(geometry, positions, groups)
    has = occupied > 0
    out: dict[str, Any] = {
        "same_share": float(share[has].mean()) if has.any() else None,
        "isolated": int((~has).sum()),
        "dissimilarity": dissimilarity(geometry, positions, groups, len(labels), block),
    }
    per_group = []
    for code, label in enumerate(labels):
        mine = groups == code
        sel = mine & has
        entry: dict[str, Any] = {
            "group": label,
            "n": int(mine.sum()),
            "same_share": float(share[sel].mean()) if sel.any() else None,
        }
        if threshold is not None:
            entry["unhappy"] = int((sel & (share < threshold)).sum())
        per_group.append(entry)
    if threshold is not None:
        out["unhappy"] = int((has & (share < threshold)).sum())
    out["groups"] = per_group
    return out, share
