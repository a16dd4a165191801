"""Graph generators in vectorised numpy: small-world, scale-free, stochastic block model.

Why not a library: python-igraph's C generators were measured here at 1M agents with
10 edges each: ``Graph.Barabasi`` takes 7.3 s and its edges come out as a list of 10M
Python tuples (seconds more and ~1 GB); networkx is pure Python and slower still. These
generators draw every edge with whole-array operations (1M agents, 10M edges in a
couple of seconds, see docs/benchmarks.md) and depend only on (seed, parameters), so
every shard that builds the graph gets the same one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from megasim.env.network_graph import SocialGraph
from megasim.seeding import derive_seed


def _rng(seed: int, salt: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, salt))


def scale_free(agents: int, follows: int, seed: int, mutual: bool = False) -> SocialGraph:
    """Preferential attachment (Barabási–Albert): each agent follows ``follows`` earlier
    agents picked in proportion to their degree, so followers are heavy-tailed.

    Vectorised Batagelj–Brandes: in the array of edge endpoints, edge ``e``'s target is a
    copy of a uniformly drawn earlier endpoint (which picks a node in proportion to its
    degree); copies of copies are resolved by pointer jumping, a few whole-array passes."""
    if agents < 2 or follows < 1:
        return SocialGraph.from_edges(agents, np.zeros(0, np.int64), np.zeros(0, np.int64))
    rng = _rng(seed, 1)
    d = follows
    total = agents * d
    edge = np.arange(total, dtype=np.int64)
    # position 2e holds edge e's source (node e // d), 2e+1 its target; draw in [0, 2e]
    draw = (rng.random(total) * (2 * edge + 1)).astype(np.int64)
    pos = draw.copy()
    odd = np.flatnonzero(pos & 1)
    while odd.size:  # a target copies an earlier target: jump to that edge's own draw
        pos[odd] = draw[(pos[odd] - 1) >> 1]
        odd = odd[(pos[odd] & 1).astype(bool)]
    targets = (pos >> 1) // d
    sources = edge // d
    return SocialGraph.from_edges(agents, sources, targets, mutual)


def small_world(agents: int, neighbours: int, rewire: float, seed: int) -> SocialGraph:
    """Watts–Strogatz: a ring where each agent is friends (mutual follows) with its
    ``neighbours`` nearest (half each side); each edge's far end is rewired to a random
    agent with probability ``rewire``."""
    half = max(1, neighbours // 2)
    if agents <= 2 * half:
        half = max(0, (agents - 1) // 2)
    if half == 0:
        return SocialGraph.from_edges(agents, np.zeros(0, np.int64), np.zeros(0, np.int64))
    rng = _rng(seed, 2)
    sources = np.repeat(np.arange(agents, dtype=np.int64), half)
    targets = (sources + np.tile(np.arange(1, half + 1, dtype=np.int64), agents)) % agents
    moved = rng.random(sources.size) < rewire
    targets[moved] = rng.integers(0, agents, int(moved.sum()))
    return SocialGraph.from_edges(agents, sources, targets, mutual=True)


def block_model(
    blocks: npt.NDArray[np.integer], degree: float, homophily: float, seed: int
) -> SocialGraph:
    """Stochastic block model over a population attribute (``blocks``: a code per agent,
    such as a community or a stance bucket): mutual ties, ``degree`` on average, of
    which a share ``homophily`` inside the agent's own block.

    Edge counts are drawn per block (Poisson), endpoints uniformly within the block or,
    for ties across blocks, among agents of other blocks (redrawn until they are)."""
    codes = np.asarray(blocks, dtype=np.int64)
    agents = int(codes.size)
    rng = _rng(seed, 3)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_codes[1:] != sorted_codes[:-1])))
    sizes = np.diff(np.append(starts, agents))
    labels = sorted_codes[starts]
    src_parts, dst_parts = [], []
    for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
        count = int(rng.poisson(size * degree * homophily / 2))
        members = order[start : start + size]
        src_parts.append(members[rng.integers(0, size, count)])
        dst_parts.append(members[rng.integers(0, size, count)])
    if labels.size > 1:
        count = int(rng.poisson(agents * degree * (1 - homophily) / 2))
        src = rng.integers(0, agents, count)
        dst = rng.integers(0, agents, count)
        same = np.flatnonzero(codes[src] == codes[dst])
        while same.size:
            dst[same] = rng.integers(0, agents, same.size)
            same = same[codes[src[same]] == codes[dst[same]]]
        src_parts.append(src)
        dst_parts.append(dst)
    if not src_parts:
        return SocialGraph.from_edges(agents, np.zeros(0, np.int64), np.zeros(0, np.int64))
    return SocialGraph.from_edges(
        agents, np.concatenate(src_parts), np.concatenate(dst_parts), mutual=True
    )
