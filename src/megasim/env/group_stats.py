"""Per-group counts and exact sums of decision values: the partials most environments
reduce to, so that means and spreads do not depend on how agents were sharded."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from megasim.env.base import DecisionBatch
from megasim.exact import as_fraction, exact_group_sums

PARTIAL_KEYS = ("n", "valid", "sum", "sumsq")


def group_partial(batch: DecisionBatch, groups: int) -> dict[str, list[int]]:
    """Shard side: per group, decisions, valid ones, and exact sums of values and squares."""
    members = batch.groups[batch.valid]
    values = batch.values[batch.valid]
    return {
        "n": np.bincount(batch.groups, minlength=groups).tolist(),
        "valid": np.bincount(members, minlength=groups).tolist(),
        "sum": exact_group_sums(values, members, groups),
        "sumsq": exact_group_sums(values * values, members, groups),
    }


def add_partials(partials: Sequence[Mapping[str, Any]], groups: int) -> dict[str, list[int]]:
    """Driver side: the element-wise total of every shard's ``group_partial``."""
    totals: dict[str, list[int]] = {key: [0] * groups for key in PARTIAL_KEYS}
    for partial in partials:
        for key, total in totals.items():
            for i, value in enumerate(partial[key]):
                total[i] += int(value)
    return totals


def moments(
    totals: Mapping[str, list[int]], members: Sequence[int]
) -> tuple[int, Fraction | None, float | None]:
    """(valid count, exact mean, std) over the ``members`` groups; None when none is valid."""
    valid = sum(totals["valid"][i] for i in members)
    if valid == 0:
        return 0, None, None
    mean = as_fraction(sum(totals["sum"][i] for i in members)) / valid
    mean_sq = as_fraction(sum(totals["sumsq"][i] for i in members)) / valid
    return valid, mean, math.sqrt(max(float(mean_sq - mean * mean), 0.0))


def group_sizes(population: pa.Table) -> list[int]:
    """Members of each group 0..max(group) of a population table."""
    groups = np.asarray(population.column("group").to_numpy(), dtype=np.int64)
    sizes = np.bincount(groups, minlength=int(groups.max()) + 1 if groups.size else 1)
    return [int(n) for n in sizes]
