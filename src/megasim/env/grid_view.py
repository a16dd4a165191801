"""What an agent on the grid sees: its own neighbourhood and a few empty cells on offer.

A shard computes the views of agents in blocks of ``CHUNK`` consecutive agents, with
numpy, the first time ``observe`` asks for one of them; ``observe`` itself only indexes
lists. Why blocks and not all agents at once: the environment is not told which agents
its shard holds, and a shard holding a tenth of the agents should not pay for all.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from megasim.env.grid_geometry import Cells, Geometry, seeded_keys
from megasim.env.grid_stats import EMPTY, Codes, around

CHUNK = 16384
OFFER_SALT = 0x6F66666572  # "offer": the seeded stream of offered empty cells


class Place(NamedTuple):
    """A cell and who lives around it: ``counts[g]`` neighbours of group g, ``empty``
    empty neighbouring cells (cells off the edge of a flat grid are not counted)."""

    cell: int
    x: int
    y: int
    counts: tuple[int, ...]
    empty: int


class GridView(NamedTuple):
    """One agent's observation. ``offers`` are empty cells it may move to this step,
    described as they would be after its move (it no longer counts as its own neighbour).
    Named tuples, not frozen dataclasses: half a million are made per step, and a frozen
    dataclass's ``__init__`` costs several times more."""

    step: int  # the step about to be played, 1-based
    group: int
    labels: tuple[str, ...]
    size: int  # cells in a neighbourhood
    here: Place
    offers: tuple[Place, ...]

    @property
    def same(self) -> int:
        return self.here.counts[self.group]

    @property
    def occupied(self) -> int:
        return sum(self.here.counts)


def offered_indices(keys: list[npt.NDArray[np.uint64]], n_empty: int) -> npt.NDArray[np.int64]:
    """(n, k) distinct indices into the empty-cell list per agent (Floyd's sampling, one
    column at a time), from k seeded key columns; fewer columns if fewer cells are empty."""
    k = min(len(keys), n_empty)
    n = keys[0].size if keys else 0
    chosen = np.empty((n, k), dtype=np.int64)
    for col, j in enumerate(range(n_empty - k, n_empty)):
        t = (keys[col] % np.uint64(j + 1)).astype(np.int64)
        taken = (chosen[:, :col] == t[:, None]).any(axis=1)
        chosen[:, col] = np.where(taken, j, t)
    return chosen


def _counts(codes: Codes, n_groups: int) -> npt.NDArray[np.int64]:
    """(..., n_groups + 1) neighbours per group, then empty cells, from (..., size) codes."""
    by_cell = np.moveaxis(codes, -1, 0).copy()  # summing over a short last axis is slow
    parts = [(by_cell == g).sum(axis=0) for g in range(n_groups)]
    parts.append((by_cell == EMPTY).sum(axis=0))
    return np.stack(parts, axis=-1).astype(np.int64)


class ViewBlock:
    """The views of agents ``start .. start + n``, as Python lists for cheap indexing."""

    __slots__ = ("here", "offers", "start")

    def __init__(self, start: int, here: list[Any], offers: list[Any]) -> None:
        self.start = start
        self.here = here  # per agent: [cell, x, y, *counts, empty]
        self.offers = offers  # per agent: the same for each offered cell, concatenated


def compute_block(
    geometry: Geometry,
    grid: Codes,
    empty_cells: Cells,
    positions: Cells,
    groups: Codes,
    agent_ids: npt.NDArray[np.int64],
    n_groups: int,
    offers: int,
    seed: int,
    step: int,
    start: int,
) -> ViewBlock:
    """Views of one block of agents against the start-of-step ``grid``."""
    stop = min(start + CHUNK, positions.size)
    cells = positions[start:stop]
    own = groups[start:stop]
    x, y = geometry.xy(cells)
    here = np.column_stack([cells, x, y, _counts(around(geometry, grid, cells), n_groups)])
    # one flat list per agent (offers side by side): far fewer Python objects than nesting
    ids = agent_ids[start:stop]
    keys = [seeded_keys(seed, step, OFFER_SALT + j, ids) for j in range(offers)]
    picked = empty_cells[offered_indices(keys, int(empty_cells.size))]  # (n, k)
    k = picked.shape[1]
    if k == 0:
        return ViewBlock(start, here.tolist(), [[] for _ in range(cells.size)])
    flat = picked.ravel()
    near = geometry.neighbours(flat)  # (n*k, size)
    counts = _counts(around(geometry, grid, flat, near), n_groups).reshape(cells.size, k, -1)
    # the mover's own cell, if next to an offered cell, will be empty after its move
    beside = (near.reshape(cells.size, k, -1) == cells[:, None, None]).any(axis=-1)
    rows = np.arange(cells.size)[:, None]
    counts[rows, np.arange(k)[None, :], own[:, None].astype(np.int64)] -= beside
    counts[:, :, n_groups] += beside
    ox, oy = geometry.xy(flat)
    table = np.concatenate(
        [np.stack([picked, ox.reshape(-1, k), oy.reshape(-1, k)], axis=-1), counts], axis=-1
    )
    return ViewBlock(start, here.tolist(), table.reshape(cells.size, -1).tolist())


def place(row: list[int], n_groups: int, at: int = 0) -> Place:
    """The Place stored at ``row[at:]`` (fields: cell, x, y, counts..., empty)."""
    end = at + 3 + n_groups
    return Place(row[at], row[at + 1], row[at + 2], tuple(row[at + 3 : end]), row[end])


def places(row: list[int], n_groups: int) -> tuple[Place, ...]:
    width = 4 + n_groups
    return tuple(place(row, n_groups, at) for at in range(0, len(row), width))
