"""GridWorld's geometry, moves and observations, without a runtime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megasim.agent import Agent
from megasim.env.base import DecisionBatch
from megasim.env.grid import GridWorld, decode_positions, encode_positions, random_placement
from megasim.env.grid_geometry import Geometry
from megasim.env.grid_moves import resolve_moves


class Dot(Agent):
    """Just an id: observe() needs nothing else."""

    def __init__(self, agent_id: int) -> None:
        self.id = agent_id


def world(
    geometry: Geometry, cells: Sequence[int], groups: Sequence[int], seed: int = 0, offers: int = 3
) -> GridWorld:
    n = len(cells)
    return GridWorld(
        geometry,
        np.arange(n, dtype=np.int64),
        np.asarray(groups, dtype=np.int16),
        ["a", "b"],
        np.asarray(cells, dtype=np.int64),
        seed=seed,
        offers=offers,
        threshold=0.5,
    )


def batch(values: Sequence[float]) -> DecisionBatch:
    vals = np.asarray(values, dtype=np.float64)
    return DecisionBatch(
        np.arange(vals.size, dtype=np.int64), np.zeros(vals.size, np.int32), vals, ~np.isnan(vals)
    )


# --- geometry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "radius", "size"),
    [("moore", 1, 8), ("moore", 2, 24), ("von_neumann", 1, 4), ("von_neumann", 2, 12)],
)
def test_neighbourhood_sizes(kind: str, radius: int, size: int) -> None:
    g = Geometry(9, 9, True, kind, radius)  # type: ignore[arg-type]
    assert g.size == size
    near = g.neighbours(np.array([40]))  # the centre: nothing wraps
    assert sorted(near[0].tolist()) == sorted(
        40 + dy * 9 + dx
        for dx in range(-radius, radius + 1)
        for dy in range(-radius, radius + 1)
        if (dx or dy)
        and (max(abs(dx), abs(dy)) if kind == "moore" else abs(dx) + abs(dy)) <= radius
    )


def test_flat_grid_edges_and_torus_wrap() -> None:
    flat = Geometry(5, 4, torus=False)
    corner = flat.neighbours(np.array([0]))[0]
    assert sorted(c for c in corner.tolist() if c >= 0) == [1, 5, 6]
    torus = Geometry(5, 4, torus=True)
    assert set(torus.neighbours(np.array([0]))[0].tolist()) == {1, 4, 5, 6, 9, 15, 16, 19}
    assert torus.in_range(np.array([0]), np.array([19])).tolist() == [True]  # wraps both ways
    assert flat.in_range(np.array([0]), np.array([19])).tolist() == [False]
    assert torus.in_range(np.array([7]), np.array([7])).tolist() == [False]  # not itself


def test_a_torus_too_small_for_its_radius_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        Geometry(4, 9, torus=True, radius=2)
    Geometry(4, 9, torus=False, radius=2)  # a flat grid has no such problem


# --- moves --------------------------------------------------------------------------------


def test_many_agents_wanting_one_cell_one_wins_and_the_rest_stay() -> None:
    g = Geometry(10, 10)
    positions = np.arange(20, dtype=np.int64)  # cells 0-19 taken
    ids = np.arange(20, dtype=np.int64)
    agents = np.arange(20, dtype=np.int64)
    targets = np.full(20, 55, dtype=np.int64)
    winners = set()
    for seed in range(12):
        result = resolve_moves(positions, agents, targets, ids, g, seed, step=1)
        assert result.movers.size == 1
        assert result.lost == 19
        assert (result.positions == 55).sum() == 1
        assert np.unique(result.positions).size == 20  # nobody lost, nobody duplicated
        stayed = np.setdiff1d(agents, result.movers)
        assert (result.positions[stayed] == positions[stayed]).all()
        winners.add(int(result.movers[0]))
        again = resolve_moves(positions, agents[::-1], targets, ids, g, seed, step=1)
        assert again.movers.tolist() == result.movers.tolist()  # request order is irrelevant
    assert len(winners) > 3  # the seeded rule, not "lowest id wins"


def test_only_cells_empty_at_the_start_of_the_step_can_be_taken() -> None:
    g = Geometry(5, 5)
    positions = np.array([0, 1, 2], dtype=np.int64)
    # 0 -> 1 (taken), 1 -> 10 (free), 2 -> 1 (vacated this step: still refused), 2 twice no
    result = resolve_moves(
        positions,
        np.array([0, 1, 2]),
        np.array([1, 10, 1]),
        np.arange(3, dtype=np.int64),
        g,
        0,
        1,
    )
    assert result.positions.tolist() == [0, 10, 2]
    assert (result.refused, result.requested, result.lost) == (2, 1, 0)
    with pytest.raises(ValueError, match="twice"):
        resolve_moves(positions, np.array([1, 1]), np.array([9, 8]), np.arange(3), g, 0, 1)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(3, 12),
    st.integers(3, 12),
    st.integers(0, 2**31),
    st.floats(0.1, 0.9),
)
def test_moves_never_lose_or_duplicate_agents(w: int, h: int, seed: int, density: float) -> None:
    g = Geometry(w, h, torus=False)
    n = max(1, int(g.cells * density))
    positions = random_placement(g.cells, n, seed)
    rng = np.random.default_rng(seed)
    agents = rng.choice(n, size=rng.integers(0, n + 1), replace=False).astype(np.int64)
    targets = rng.integers(-2, g.cells + 2, size=agents.size).astype(np.int64)
    ids = np.arange(n, dtype=np.int64) * 7 + 3  # ids need not be indices
    result = resolve_moves(positions, agents, targets, ids, g, seed, step=2)
    assert np.unique(result.positions).size == n
    assert ((result.positions >= 0) & (result.positions < g.cells)).all()
    free = np.setdiff1d(np.arange(g.cells), positions)
    wanted = targets[np.isin(targets, free)]
    assert result.movers.size == np.unique(wanted).size  # every wanted free cell taken once
    assert result.requested + result.refused == agents.size
    assert result.requested - result.lost == result.movers.size
    by_agent = dict(zip(agents.tolist(), targets.tolist(), strict=True))
    for agent in result.movers.tolist():
        assert result.positions[agent] == by_agent[agent]
    still = np.setdiff1d(np.arange(n), result.movers)
    assert (result.positions[still] == positions[still]).all()


# --- observations, snapshot, reduction ----------------------------------------------------


def test_observation_counts_the_neighbourhood_and_offers_empty_cells() -> None:
    g = Geometry(5, 5, torus=False)
    # agent 0 (a) at 12 (centre); 1 (a) at 6; 2 (b) at 7; 3 (b) at 0 (not a neighbour)
    env = world(g, [12, 6, 7, 0], [0, 0, 1, 1], offers=4)
    env.prepare()
    view = env.observe(Dot(0))
    assert view.here.cell == 12
    assert (view.here.x, view.here.y) == (2, 2)
    assert view.here.counts == (1, 1)
    assert view.here.empty == 6
    assert (view.same, view.occupied) == (1, 2)
    cells = [p.cell for p in view.offers]
    assert len(set(cells)) == 4
    assert not set(cells) & {12, 6, 7, 0}
    grid = {12: 0, 6: 0, 7: 1, 0: 1}
    for offer in view.offers:
        near = [c for c in g.neighbours(np.array([offer.cell]))[0].tolist() if c >= 0]
        others = [grid[c] for c in near if c in grid and c != 12]  # it has moved away
        assert offer.counts == (others.count(0), others.count(1))
        assert offer.empty == len(near) - len(others)
    corner = env.observe(Dot(3))
    assert corner.here.counts == (1, 0)  # a flat grid's corner: 1, 5 and 6 (agent 1, a)
    assert corner.here.empty == 2


def test_views_do_not_depend_on_who_was_observed_first() -> None:
    g = Geometry(40, 40)
    n = 700
    positions = random_placement(g.cells, n, 9)
    groups = np.arange(n) % 2
    first, second = world(g, positions, groups, seed=4), world(g, positions, groups, seed=4)
    first.prepare()
    second.prepare()
    forward = [first.observe(Dot(i)) for i in range(n)]
    backward = [second.observe(Dot(i)) for i in reversed(range(n))][::-1]
    assert forward == backward


def test_snapshot_round_trip_and_size() -> None:
    g = Geometry(100, 100)
    positions = random_placement(g.cells, 5000, 1)
    env = world(g, positions, np.zeros(5000))
    snap = env.snapshot()
    assert len(snap["state"]["positions"]) == 4 * 5000 * 4 // 3 + 4 - (4 * 5000 * 4 // 3) % 4
    other = world(g, np.arange(5000), np.zeros(5000))
    other.restore(snap)
    assert (other.positions == positions).all()
    assert "positions" not in other.state  # decoded, not kept as text
    assert (decode_positions(encode_positions(positions)) == positions).all()


def test_reduce_turns_decisions_into_move_requests() -> None:
    g = Geometry(5, 5)
    env = world(g, [0, 1, 2, 3], [0, 0, 1, 1])
    env.prepare()
    partial = env.reduce(batch([0, 9, float("nan"), 7.5]))  # stay, move, invalid, not a cell
    assert partial["agents"].tolist() == [1]
    assert partial["targets"].tolist() == [9]
    assert (partial["n"], partial["valid"], partial["stay"]) == (4, 3, 1)
