"""Applying a step's moves at the step boundary: conflicts, and who came into range.

Agents decide where they want to be during a step, all against the same start-of-step
grid; the driver applies every request at once here. Rules (why: the result must not
depend on sharding, timing or the order shards answered in):

- a request is valid only for a cell that was empty at the start of the step; a cell
  vacated during the step is free from the next step on;
- several agents wanting the same cell: the one with the lowest seeded key of
  (seed, step, agent id) gets it, the others stay where they were (``lost``);
- so every agent ends in exactly one cell and no cell holds two agents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from megasim.env.grid_geometry import Cells, Geometry, seeded_keys

MOVE_SALT = 0x6D6F7665  # "move": the seeded stream of conflict keys
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class MoveResult:
    """The positions after a step and what happened to each request."""

    positions: Cells  # per agent index, after the step
    movers: Ints  # agent indices that moved, sorted
    origins: Cells  # their cells before the step
    requested: int  # valid requests to move
    lost: int  # requests that lost a conflict to another agent
    refused: int  # requests for a cell that was not empty or not on the grid


def resolve_moves(
    positions: Cells,
    agents: Ints,
    targets: Cells,
    agent_ids: Ints,
    geometry: Geometry,
    seed: int,
    step: int,
) -> MoveResult:
    """Apply move requests ``agents[i] -> targets[i]`` (agent indices, cells)."""
    if np.unique(agents).size != agents.size:
        raise ValueError("an agent asked to move twice in one step")
    empty = np.ones(geometry.cells, dtype=np.bool_)
    empty[positions] = False
    on_grid = (targets >= 0) & (targets < geometry.cells)
    ok = on_grid.copy()
    ok[on_grid] = empty[targets[on_grid]]
    refused = int(agents.size - ok.sum())
    agents, targets = agents[ok], targets[ok]
    keys = seeded_keys(seed, step, MOVE_SALT, agent_ids[agents])
    order = np.lexsort((keys, targets))  # by target, then by key: the first of each wins
    sorted_targets = targets[order]
    first = np.ones(order.size, dtype=np.bool_)
    first[1:] = sorted_targets[1:] != sorted_targets[:-1]
    winners = order[first]
    movers = agents[winners]
    sort = np.argsort(movers)
    movers, to = movers[sort], targets[winners][sort]
    after = positions.copy()
    origins = positions[movers]
    after[movers] = to
    return MoveResult(
        after, movers, origins, int(agents.size), int(agents.size - movers.size), refused
    )


def occupancy(positions: Cells, cells: int) -> npt.NDArray[np.int32]:
    """Agent index per cell, -1 where empty."""
    grid = np.full(cells, -1, dtype=np.int32)
    grid[positions] = np.arange(positions.size, dtype=np.int32)
    return grid


def new_pairs_in_range(result: MoveResult, before: Cells, geometry: Geometry) -> Ints:
    """(k, 2) agent-index pairs, each once and smaller index first, that are neighbours
    after the step and were not before: the ``in_range`` events of a step."""
    if result.movers.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    after = result.positions
    grid = occupancy(after, geometry.cells)
    around = geometry.neighbours(after[result.movers])  # (m, size)
    valid = around >= 0
    others = np.where(valid, grid[np.where(valid, around, 0)], -1)
    mover = np.broadcast_to(result.movers[:, None], others.shape)
    keep = others >= 0
    a, b = mover[keep].astype(np.int64), others[keep].astype(np.int64)
    fresh = ~geometry.in_range(before[a], before[b])
    a, b = a[fresh], b[fresh]
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    return np.unique(pairs, axis=0) if pairs.size else pairs.reshape(0, 2)
