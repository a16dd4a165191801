"""Per-step reductions of the social network: stance distribution, polarisation,
assortativity on the follow graph, echo chambers per community, actions.

Shards return sums (counts, moments, a histogram, sums over follow pairs); the driver
adds them and derives the statistics, so no per-agent data leaves a shard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from megasim.exact import as_fraction, exact_group_sums

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
    one = np.zeros(x.size, dtype=np.int64)
    return {
        "n": int(x.size),
        "powers": [exact_group_sums(x**k, one, 1)[0] for k in range(1, 5)],
        "hist": hist.tolist(),
        "c_n": np.bincount(g, minlength=communities).tolist(),
        "c_sum": exact_group_sums(x, g, communities),
        "c_sq": exact_group_sums(x * x, g, communities),
    }


def pair_partial(own: Sequence[float], theirs: Sequence[float]) -> list[int]:
    """(n, sx, sy, sxx, syy, sxy) over (own stance, followee's stance) pairs, exact (ints
    in units of 2**-SCALE_BITS; n a count), so their total is the same for any sharding."""
    x, y = np.asarray(own, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    one = np.zeros(x.size, dtype=np.int64)
    sums = [exact_group_sums(v, one, 1)[0] for v in (x, y, x * x, y * y, x * y)]
    return [int(x.size), *sums]


def bimodality(n: int, powers: Sequence[Fraction]) -> tuple[float | None, float | None]:
    """(variance, Sarle's bimodality coefficient) from exact power sums; > 5/9 suggests
    two modes (polarisation), a uniform distribution gives exactly 5/9. The central
    moments are computed exactly (no cancellation at a million agents), then as floats."""
    if n < 4:
        return None, None
    mean = powers[0] / n
    m2 = powers[1] / n - mean**2
    if m2 <= Fraction(1, 10**12):
        return max(0.0, float(m2)), None
    m3 = powers[2] / n - 3 * mean * powers[1] / n + 2 * mean**3
    m4 = powers[3] / n - 4 * mean * powers[2] / n + 6 * mean**2 * powers[1] / n - 3 * mean**4
    skew = float(m3) / float(m2) ** 1.5
    excess = float(m4 / m2**2) - 3.0
    correction = 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))
    return float(m2 * n / (n - 1)), (skew**2 + 1.0) / (excess + correction)


def pearson(n: int, sums: Sequence[Fraction]) -> float | None:
    """Correlation from n and the exact sums (sx, sy, sxx, syy, sxy)."""
    if n < 2:
        return None
    sx, sy, sxx, syy, sxy = sums
    cov = sxy / n - (sx / n) * (sy / n)
    vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
    if vx <= Fraction(1, 10**12) or vy <= Fraction(1, 10**12):
        return None
    return float(cov) / math.sqrt(float(vx) * float(vy))


def _r(x: float | None) -> float | None:
    """Rounded to 9 decimals for display; the sums behind it are exact, so the value is
    the same for any number of shards."""
    return None if x is None else round(x, 9)


def _add(lists: Sequence[Sequence[int]]) -> list[int]:
    return [sum(column) for column in zip(*lists, strict=True)] if lists else []


def _exact(lists: Sequence[Sequence[int]], size: int) -> list[Fraction]:
    return [as_fraction(v) for v in (_add(lists) or [0] * size)]


def combine_network(partials: Sequence[Mapping[str, Any]], communities: int) -> dict[str, Any]:
    """The step's outcome from every shard's partial."""
    n = sum(int(p["n"]) for p in partials)
    powers = _exact([p["powers"] for p in partials], 4)
    variance, coefficient = bimodality(n, powers)
    c_n = _add([p["c_n"] for p in partials]) or [0] * communities
    c_sum = _exact([p["c_sum"] for p in partials], communities)
    c_sq = _exact([p["c_sq"] for p in partials], communities)
    seen = _add([p["seen"] for p in partials]) or [0] * communities
    same = _add([p["same_side"] for p in partials]) or [0] * communities
    pairs = [p["pairs"] for p in partials]
    pair_n = sum(int(p[0]) for p in pairs)
    pair_sums = _exact([p[1:] for p in pairs], 5)
    rows = []
    for c in range(communities):
        count = int(c_n[c])
        mean = c_sum[c] / count if count else None
        std = math.sqrt(max(0.0, float(c_sq[c] / count - mean**2))) if mean is not None else None
        rows.append(
            {
                "community": c,
                "n": count,
                "mean": _r(None if mean is None else float(mean)),
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
        "mean": _r(float(powers[0] / n)) if n else None,
        "variance": _r(variance),
        "bimodality": _r(coefficient),
        "histogram": [int(v) for v in _add([p["hist"] for p in partials]) or [0] * BINS],
        "assortativity": _r(pearson(pair_n, pair_sums)),
        "same_side_share": _r(total_same / total_seen) if total_seen else None,
        "communities": rows,
        "actions": actions,
    }
