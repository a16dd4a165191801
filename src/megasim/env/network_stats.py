"""Per-step reductions of the social network: stance distribution, polarisation,
assortativity on the follow graph, echo chambers per community, actions.

Shards return sums (counts, moments, a histogram, sums over follow pairs); the driver
adds them and derives the statistics, so no per-agent data leaves a shard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

BINS = 10
ACTIONS = ("post", "like", "repost", "comment", "follow", "unfollow", "none")
MIDPOINT = 50.0  # stances are on 0-100; either side of it is a "side"


def stance_partial(
    values: npt.NDArray[np.float64],
    groups: npt.NDArray[np.int32],
    communities: int,
    low: float,
    high: float,
) -> dict[str, Any]:
    """Counts, power sums (1-4) and a histogram of the valid stances, overall and per
    community (the agents' groups)."""
    ok = ~np.isnan(values)
    x, g = values[ok], groups[ok].astype(np.int64)
    edges = np.linspace(low, high, BINS + 1)
    hist = np.histogram(np.clip(x, low, high), bins=edges)[0]
    return {
        "n": int(x.size),
        "powers": [float(np.sum(x**k)) for k in range(1, 5)],
        "hist": hist.tolist(),
        "c_n": np.bincount(g, minlength=communities).tolist(),
        "c_sum": np.bincount(g, weights=x, minlength=communities).tolist(),
        "c_sq": np.bincount(g, weights=x * x, minlength=communities).tolist(),
    }


def bimodality(n: int, powers: Sequence[float]) -> tuple[float | None, float | None]:
    """(variance, Sarle's bimodality coefficient) from power sums; > 5/9 suggests two
    modes (polarisation), a uniform distribution gives exactly 5/9."""
    if n < 4:
        return None, None
    mean = powers[0] / n
    m2 = powers[1] / n - mean**2
    if m2 <= 1e-12:
        return max(0.0, m2), None
    m3 = powers[2] / n - 3 * mean * powers[1] / n + 2 * mean**3
    m4 = powers[3] / n - 4 * mean * powers[2] / n + 6 * mean**2 * powers[1] / n - 3 * mean**4
    skew = m3 / m2**1.5
    excess = m4 / m2**2 - 3.0
    correction = 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))
    return m2 * n / (n - 1), (skew**2 + 1.0) / (excess + correction)


def pearson(sums: Sequence[float]) -> float | None:
    """Correlation from (n, sx, sy, sxx, syy, sxy)."""
    n, sx, sy, sxx, syy, sxy = sums
    if n < 2:
        return None
    cov = sxy / n - (sx / n) * (sy / n)
    vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
    if vx <= 1e-12 or vy <= 1e-12:
        return None
    return cov / math.sqrt(vx * vy)


def _r(x: float | None) -> float | None:
    """Rounded to 9 decimals: float sums of shard partials differ in their last bits with
    the number of shards, and outcomes should not."""
    return None if x is None else round(x, 9)


def _add(lists: Sequence[Sequence[float]]) -> list[float]:
    return [float(sum(column)) for column in zip(*lists, strict=True)] if lists else []


def combine_network(partials: Sequence[Mapping[str, Any]], communities: int) -> dict[str, Any]:
    """The step's outcome from every shard's partial."""
    n = sum(int(p["n"]) for p in partials)
    powers = _add([p["powers"] for p in partials]) or [0.0] * 4
    variance, coefficient = bimodality(n, powers)
    c_n = _add([p["c_n"] for p in partials]) or [0.0] * communities
    c_sum = _add([p["c_sum"] for p in partials]) or [0.0] * communities
    c_sq = _add([p["c_sq"] for p in partials]) or [0.0] * communities
    seen = _add([p["seen"] for p in partials]) or [0.0] * communities
    same = _add([p["same_side"] for p in partials]) or [0.0] * communities
    rows = []
    for c in range(communities):
        count = int(c_n[c])
        mean = c_sum[c] / count if count else None
        std = math.sqrt(max(0.0, c_sq[c] / count - mean**2)) if mean is not None else None
        rows.append(
            {
                "community": c,
                "n": count,
                "mean": _r(mean),
                "std": _r(std),
                "feed_items": int(seen[c]),
                "same_side_share": _r(same[c] / seen[c]) if seen[c] else None,
            }
        )
    actions = {a: sum(int(p["actions"].get(a, 0)) for p in partials) for a in ACTIONS}
    total_seen, total_same = sum(seen), sum(same)
    return {
        "n": n,
        "valid": n,
        "mean": _r(powers[0] / n) if n else None,
        "variance": _r(variance),
        "bimodality": _r(coefficient),
        "histogram": [int(v) for v in _add([p["hist"] for p in partials]) or [0] * BINS],
        "assortativity": _r(pearson(_add([p["pairs"] for p in partials]) or [0.0] * 6)),
        "same_side_share": _r(total_same / total_seen) if total_seen else None,
        "communities": rows,
        "actions": actions,
    }
