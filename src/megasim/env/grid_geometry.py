"""Grid geometry: cells of a width x height grid or torus, neighbourhoods, distances.

Everything here works on numpy arrays of cell indices (``y * width + x``), never on one
cell at a time: a million cells and half a million agents are handled by a few
vectorised passes, which is what lets a grid step skip per-agent Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from megasim.seeding import derive_seed

Neighbourhood = Literal["moore", "von_neumann"]
Cells = npt.NDArray[np.int64]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def mix64_array(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64 of every element (``megasim.seeding.mix64``, vectorised; uint64 wraps)."""
    x = x + _M1
    x = (x ^ (x >> np.uint64(30))) * _M2
    x = (x ^ (x >> np.uint64(27))) * _M3
    return x ^ (x >> np.uint64(31))


def seeded_keys(
    seed: int, step: int, salt: int, ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """One 64-bit pseudo-random key per id, a pure function of (seed, step, salt, id).

    Why ids and not positions in an array: a shard sees a slice of the agents, and the
    draw of agent 17 must not depend on which slice it was in."""
    base = np.uint64(derive_seed(seed, salt, step))
    return mix64_array(ids.astype(np.uint64) ^ base)


@dataclass(frozen=True)
class Geometry:
    """A rectangle of cells, optionally wrapped into a torus, with a neighbourhood rule."""

    width: int
    height: int
    torus: bool = True
    neighbourhood: Neighbourhood = "moore"
    radius: int = 1
    offsets: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"a grid needs at least one cell, not {self.width}x{self.height}")
        if self.radius < 1:
            raise ValueError(f"radius must be at least 1, not {self.radius}")
        if self.torus and min(self.width, self.height) < 2 * self.radius + 1:
            raise ValueError(
                f"a {self.width}x{self.height} torus is too small for radius {self.radius}: "
                "a neighbourhood would wrap onto itself (need width and height >= 2 * radius + 1)"
            )
        r = self.radius
        grid_x, grid_y = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1))
        dx, dy = grid_x.ravel(), grid_y.ravel()
        near = np.maximum(abs(dx), abs(dy)) if self.neighbourhood == "moore" else abs(dx) + abs(dy)
        keep = (near <= r) & ((dx != 0) | (dy != 0))
        object.__setattr__(self, "offsets", np.stack([dx[keep], dy[keep]], axis=1).astype(np.int64))

    @property
    def cells(self) -> int:
        return self.width * self.height

    @property
    def size(self) -> int:
        """Cells in one neighbourhood (8 for Moore radius 1, 4 for von Neumann radius 1)."""
        return int(self.offsets.shape[0])

    def xy(self, cells: Cells) -> tuple[Cells, Cells]:
        return cells % self.width, cells // self.width

    def neighbours(self, cells: Cells) -> Cells:
        """(n, size) neighbouring cells of each cell; -1 where off the edge of a flat grid."""
        x, y = self.xy(cells)
        nx = x[:, None] + self.offsets[None, :, 0]
        ny = y[:, None] + self.offsets[None, :, 1]
        if self.torus:
            return (ny % self.height) * self.width + nx % self.width
        inside = (nx >= 0) & (nx < self.width) & (ny >= 0) & (ny < self.height)
        return np.where(inside, ny * self.width + nx, -1)

    def in_range(self, a: Cells, b: Cells) -> npt.NDArray[np.bool_]:
        """Whether cells ``a[i]`` and ``b[i]`` are neighbours (distinct and within radius)."""
        (ax, ay), (bx, by) = self.xy(a), self.xy(b)
        dx, dy = abs(ax - bx), abs(ay - by)
        if self.torus:
            dx = np.minimum(dx, self.width - dx)
            dy = np.minimum(dy, self.height - dy)
        near = np.maximum(dx, dy) if self.neighbourhood == "moore" else dx + dy
        close: npt.NDArray[np.bool_] = (near <= self.radius) & (a != b)
        return close
