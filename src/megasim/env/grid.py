"""GridWorld: agents on a 2D grid or torus who see their neighbourhood and move.

State: one cell per agent (``positions``, a numpy array indexed like the population's
rows) and a small group code per agent; no Python object per cell or agent. Why the
positions travel in the snapshot rather than in keyed state: every shard needs the
whole grid (an agent's neighbours and the offered empty cells may be anywhere), the
array is compact (4 bytes per agent, base64 in the snapshot: 2.7 MB for 500k agents,
encoded or decoded in milliseconds), and only the driver changes it. Keyed state pays
per key and per JSON value, which is right for transcripts, wrong for a dense array.

A step: each shard restores the snapshot, builds the cell -> group grid once
(``prepare``), and hands each agent a ``GridView`` (own neighbourhood, a few seeded
empty cells on offer). An agent's decision value is the cell it wants to be in (its
own cell: stay). ``reduce`` turns a shard's decisions into move requests (two int
arrays); the driver's ``combine`` resolves all of them at once (env/grid_moves.py:
cells empty at the start of the step only, conflicts by a seeded key, losers stay) and
measures the new grid; ``apply`` commits it and fires events in the background
(env/events.py): ``moved`` (agents, from, to), ``in_range`` (pairs of agents that
became neighbours; computed only when someone listens) and ``step_end``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from megasim.agent import Agent
from megasim.env.base import DecisionBatch, Environment
from megasim.env.events import listened
from megasim.env.grid_geometry import Cells, Geometry
from megasim.env.grid_moves import MoveResult, new_pairs_in_range, resolve_moves
from megasim.env.grid_stats import Codes, cell_groups, summary
from megasim.env.grid_view import CHUNK, GridView, ViewBlock, compute_block, place, places
from megasim.seeding import derive_seed

PLACE_SALT = 0x706C616365  # "place": the seeded initial placement


def encode_positions(positions: Cells) -> str:
    """Cells as base64 of little-endian int32: compact, JSON-safe (checkpoints)."""
    return base64.b64encode(positions.astype("<i4").tobytes()).decode("ascii")


def decode_positions(text: str) -> Cells:
    return np.frombuffer(base64.b64decode(text), dtype="<i4").astype(np.int64)


def random_placement(cells: int, agents: int, seed: int) -> Cells:
    """Distinct cells for ``agents`` agents, a pure function of the run seed."""
    if agents > cells:
        raise ValueError(f"{agents} agents do not fit on a grid of {cells} cells")
    rng = np.random.default_rng(derive_seed(seed, PLACE_SALT))
    return rng.choice(cells, size=agents, replace=False).astype(np.int64)


def geometry_data(geometry: Geometry) -> dict[str, Any]:
    """The plain-data form of a Geometry (snapshots, checkpoints)."""
    return {
        "width": geometry.width,
        "height": geometry.height,
        "torus": geometry.torus,
        "neighbourhood": geometry.neighbourhood,
        "radius": geometry.radius,
    }


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array = np.array(array, copy=True)
    array.flags.writeable = False  # listeners may run after the next step: give them copies
    return array


class GridWorld(Environment):
    """Agents (indexed like ``agent_ids``) on a grid; see the module doc."""

    name = "grid"

    def __init__(
        self,
        geometry: Geometry,
        agent_ids: npt.NDArray[np.int64],
        groups: Codes,
        labels: Sequence[str],
        positions: Cells,
        seed: int = 0,
        offers: int = 3,
        block: int = 10,
        threshold: float | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not agent_ids.size == groups.size == positions.size:
            raise ValueError("agent_ids, groups and positions must have one entry per agent")
        if np.unique(positions).size != positions.size:
            raise ValueError("two agents share a cell")
        self.state = {
            "step": 0,
            "seed": seed,
            "offers": offers,
            "block": block,
            "threshold": threshold,
            "labels": list(labels),
            "geometry": geometry_data(geometry),
        }
        self.geometry = geometry
        self.positions = positions.astype(np.int64)
        self._set_agents(agent_ids.astype(np.int64), groups.astype(np.int16))
        self._encoded: dict[str, str] = {}  # static arrays, encoded once (driver)
        self._decoded: dict[str, str | None] = {}  # the text static arrays were decoded from
        self._blocks: dict[int, ViewBlock] = {}
        self._step = 1
        self._grid: Codes | None = None
        self._empty: Cells | None = None
        self._pending: tuple[int, MoveResult] | None = None
        self.last_shares: npt.NDArray[np.float64] | None = None  # driver: after the last combine

    def _set_agents(self, agent_ids: npt.NDArray[np.int64], groups: Codes) -> None:
        self.agent_ids = agent_ids
        self.groups = groups
        self._identity = bool(np.array_equal(agent_ids, np.arange(agent_ids.size)))
        self._index: dict[int, int] | None = None
        self._group_list: list[int] = []

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.state["labels"])

    @property
    def threshold(self) -> float | None:
        value = self.state["threshold"]
        return None if value is None else float(value)

    # --- agent ids -> indices --------------------------------------------------------------
    def index_of(self, agent_id: int) -> int:
        if self._identity:
            return agent_id
        if self._index is None:
            self._index = {int(a): i for i, a in enumerate(self.agent_ids.tolist())}
        return self._index[agent_id]

    def indices_of(self, agent_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        if self._identity:
            return agent_ids.astype(np.int64)
        order = np.argsort(self.agent_ids, kind="stable")
        return order[np.searchsorted(self.agent_ids, agent_ids, sorter=order)].astype(np.int64)

    # --- snapshot: self-sufficient, the arrays as compact strings ---------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything a replica needs, whatever part of the population it was built from
        (a Ray shard builds its replica from its own slice): geometry, labels, positions,
        and the static groups and ids, encoded once."""
        snap = super().snapshot()
        state = snap["state"]
        state["positions"] = encode_positions(self.positions)
        if "groups" not in self._encoded:
            raw_groups = base64.b64encode(self.groups.astype("<i2").tobytes())
            self._encoded["groups"] = raw_groups.decode("ascii")
            if not self._identity:  # ids 0..n-1 (the usual case) need not travel
                raw = base64.b64encode(self.agent_ids.astype("<i8").tobytes())
                self._encoded["ids"] = raw.decode("ascii")
        state["groups"] = self._encoded["groups"]
        state["ids"] = self._encoded.get("ids")
        return snap

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        super().restore(snapshot)
        state = self.state
        self.positions = decode_positions(state.pop("positions"))
        groups, ids = state.pop("groups"), state.pop("ids")
        if self._decoded.get("groups") != groups or self._decoded.get("ids") != ids:
            # static: decoded again only if another run's snapshot arrives
            agent_ids = (
                np.arange(self.positions.size, dtype=np.int64)
                if ids is None
                else np.frombuffer(base64.b64decode(ids), dtype="<i8").astype(np.int64)
            )
            codes = np.frombuffer(base64.b64decode(groups), dtype="<i2").astype(np.int16)
            self._set_agents(agent_ids, codes)
            self._decoded = {"groups": groups, "ids": ids}
        if geometry_data(self.geometry) != state["geometry"]:
            self.geometry = Geometry(**state["geometry"])
        self._grid = None

    # --- shard side --------------------------------------------------------------------------
    def prepare(self) -> None:
        self._grid = cell_groups(self.positions, self.groups, self.geometry.cells)
        self._empty = np.flatnonzero(self._grid < 0).astype(np.int64)
        self._blocks = {}
        self._step = int(self.state["step"]) + 1
        if not self._group_list:  # groups never change: Python ints once per process
            self._group_list = self.groups.tolist()

    def observe(self, agent: Agent) -> GridView:
        if self._grid is None:
            self.prepare()
        i = agent.id if self._identity else self.index_of(agent.id)
        block = self._blocks.get(i // CHUNK)
        if block is None:
            block = self._block(i // CHUNK)
        g = len(self.state["labels"])
        row = i - block.start
        return GridView(
            self._step,
            self._group_list[i],
            self.labels,
            self.geometry.size,
            place(block.here[row], g),
            places(block.offers[row], g),
        )

    def _block(self, index: int) -> ViewBlock:
        assert self._grid is not None
        assert self._empty is not None
        block = self._blocks[index] = compute_block(
            self.geometry,
            self._grid,
            self._empty,
            self.positions,
            self.groups,
            self.agent_ids,
            len(self.labels),
            int(self.state["offers"]),
            int(self.state["seed"]),
            self._step,
            index * CHUNK,
        )
        return block

    def reduce(self, batch: DecisionBatch) -> dict[str, Any]:
        """Move requests of this shard: agent indices and cells, as int64 arrays."""
        index = self.indices_of(batch.agent_ids)
        valid = batch.valid
        want = np.where(valid, batch.values, -1.0)
        whole = valid & (want == np.floor(want))
        target = np.where(whole, want, -1).astype(np.int64)
        moving = whole & (target != self.positions[index])
        return {
            "n": int(batch.agent_ids.size),
            "valid": int(valid.sum()),
            "stay": int((whole & ~moving).sum()),
            "agents": index[moving],
            "targets": target[moving],
        }

    # --- driver side -------------------------------------------------------------------------
    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        step = int(self.state["step"]) + 1
        agents = np.concatenate([np.asarray(p["agents"], dtype=np.int64) for p in partials])
        targets = np.concatenate([np.asarray(p["targets"], dtype=np.int64) for p in partials])
        result = resolve_moves(
            self.positions,
            agents,
            targets,
            self.agent_ids,
            self.geometry,
            int(self.state["seed"]),
            step,
        )
        self._pending = (step, result)
        stats, self.last_shares = summary(
            self.geometry,
            result.positions,
            self.groups,
            list(self.labels),
            int(self.state["block"]),
            self.threshold,
        )
        n = sum(int(p["n"]) for p in partials)
        valid = sum(int(p["valid"]) for p in partials)
        return {
            "n": n,
            "valid": valid,
            "invalid": n - valid,
            "stay": sum(int(p["stay"]) for p in partials),
            "requested": result.requested + result.refused,
            "moved": int(result.movers.size),
            "lost": result.lost,
            "refused": result.refused,
            **stats,
        }

    def initial_summary(self) -> dict[str, Any]:
        """The measures of the grid as it is now (before step 1 for a new run)."""
        stats, _ = summary(
            self.geometry,
            self.positions,
            self.groups,
            list(self.labels),
            int(self.state["block"]),
            self.threshold,
        )
        return stats

    async def apply(self, step: int, outcome: Mapping[str, Any]) -> None:
        if self._pending is None or self._pending[0] != step:
            raise RuntimeError(f"apply({step}) without the combine of step {step}")
        result = self._pending[1]
        self._pending = None
        before = self.positions
        self.positions = result.positions
        self.state["step"] = step
        ids = self.agent_ids
        if result.movers.size:
            moved = {
                "step": step,
                "agents": _frozen(ids[result.movers]),
                "from": _frozen(result.origins),
                "to": _frozen(result.positions[result.movers]),
            }
            self.fire("moved", moved)
        if listened(self, "in_range"):
            pairs = new_pairs_in_range(result, before, self.geometry)
            if pairs.size:
                self.fire("in_range", {"step": step, "pairs": _frozen(ids[pairs])})
        self.fire("step_end", {"step": step, "env": self.name, **outcome})
