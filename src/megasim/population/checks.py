"""Achieved vs target marginals of a sampled population.

A run reports these so it can show it got the population it asked for, and a
reviewer can see by how much (and whether beyond sampling noise) it missed. Showing
them as tables is `checks_render.py`'s job.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from megasim.population._stats import chi2_sf, truncated_normal_moments
from megasim.population.base import MarginalCheck
from megasim.population.distributions import (
    DEFAULT_CASE,
    CategoricalDist,
    ConditionalDist,
    Distribution,
    LognormalDist,
    NormalDist,
    UniformDist,
)
from megasim.population.spec import PopulationSpec

Mask = npt.NDArray[np.bool_]


def target_moments(dist: NormalDist | LognormalDist | UniformDist) -> tuple[float, float]:
    """Theoretical mean and std of what the sampler draws (truncation and rounding included)."""
    if isinstance(dist, UniformDist):
        lo, hi = dist.integer_bounds()
        if dist.integer:
            return (lo + hi) / 2, math.sqrt(((hi - lo + 1) ** 2 - 1) / 12)
        return (lo + hi) / 2, (hi - lo) / math.sqrt(12)
    if isinstance(dist, NormalDist):
        lo, hi = dist.draw_bounds()
        if math.isinf(lo) and math.isinf(hi) and not dist.integer:
            return dist.mean, dist.std
        return truncated_normal_moments(dist.mean, dist.std, lo, hi, integer=dist.integer)
    lo, hi = dist.log_bounds()
    if math.isinf(lo) and math.isinf(hi) and not dist.integer:
        s2 = dist.sigma**2
        mean = math.exp(dist.mean + s2 / 2)
        return mean, mean * math.sqrt(math.expm1(s2))
    return truncated_normal_moments(dist.mean, dist.sigma, lo, hi, integer=dist.integer, log=True)


class _Columns:
    """Decodes each table column once: text as (codes, categories), numbers as numpy."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table
        self._cache: dict[str, Any] = {}

    def text(self, name: str) -> tuple[npt.NDArray[np.int64], list[str]]:
        if name not in self._cache:
            column = self._table.column(name)
            if not pa.types.is_dictionary(column.type):
                column = pa.chunked_array([pc.dictionary_encode(column.combine_chunks())])
            column = column.unify_dictionaries()  # chunks may carry different dictionaries
            chunks = column.chunks or [pa.DictionaryArray.from_arrays([], pa.array([], "string"))]
            indices = pa.concat_arrays([c.indices.cast(pa.int64()) for c in chunks])
            codes = indices.fill_null(-1).to_numpy(zero_copy_only=False)
            categories = [str(c) for c in chunks[0].dictionary.to_pylist()]
            self._cache[name] = (codes, categories)
        return self._cache[name]  # type: ignore[no-any-return]

    def numbers(self, name: str) -> npt.NDArray[Any]:
        if name not in self._cache:
            column = self._table.column(name).combine_chunks()
            self._cache[name] = column.to_numpy(zero_copy_only=False)
        return self._cache[name]  # type: ignore[no-any-return]

    def is_text(self, name: str) -> bool:
        kind = self._table.schema.field(name).type
        return bool(pa.types.is_dictionary(kind) or pa.types.is_string(kind))

    def equals(self, name: str, key: str) -> Mask:
        """Rows where column ``name`` has the value a conditional case key denotes."""
        if self.is_text(name):
            codes, categories = self.text(name)
            return np.isin(codes, [i for i, c in enumerate(categories) if c == key])
        values = self.numbers(name)
        if values.dtype == np.bool_:
            return values == (key == "true")  # type: ignore[no-any-return]
        return values == int(key)  # type: ignore[no-any-return]


def check_marginals(
    table: pa.Table, spec: PopulationSpec, tolerance: float = 0.02
) -> list[MarginalCheck]:
    """One check per categorical/numeric attribute, and per case of each conditional.

    Categorical checks pass when every proportion is within ``tolerance`` of its
    target; numeric ones when the mean is within ``tolerance`` target standard
    deviations of the theoretical (truncated) mean.
    """
    missing = [name for name in spec.attributes if name not in table.column_names]
    if missing:
        raise ValueError(f"table lacks attribute columns: {', '.join(missing)}")
    columns = _Columns(table)
    everyone = np.ones(table.num_rows, dtype=np.bool_)
    checks: list[MarginalCheck] = []
    for name, dist in spec.attributes.items():
        _check(name, dist, columns, everyone, None, tolerance, checks)
    return checks


def _check(
    name: str,
    dist: Distribution,
    columns: _Columns,
    mask: Mask,
    case: str | None,
    tolerance: float,
    out: list[MarginalCheck],
) -> None:
    if isinstance(dist, CategoricalDist):
        out.append(_categorical(name, dist, columns, mask, case, tolerance))
    elif isinstance(dist, NormalDist | LognormalDist | UniformDist):
        out.append(_numeric(name, dist, columns, mask, case, tolerance))
    elif isinstance(dist, ConditionalDist):
        matched = np.zeros_like(mask)
        for key in [k for k in dist.cases if k != DEFAULT_CASE]:
            sub = columns.equals(dist.given, key)
            matched |= sub
            label = f"{dist.given}={key}" if case is None else f"{case}, {dist.given}={key}"
            _check(name, dist.cases[key], columns, mask & sub, label, tolerance, out)
        if DEFAULT_CASE in dist.cases:
            label = f"{dist.given}=<other>" if case is None else f"{case}, {dist.given}=<other>"
            rest = mask & ~matched
            _check(name, dist.cases[DEFAULT_CASE], columns, rest, label, tolerance, out)


def _categorical(
    name: str,
    dist: CategoricalDist,
    columns: _Columns,
    mask: Mask,
    case: str | None,
    tolerance: float,
) -> MarginalCheck:
    codes, categories = columns.text(name)
    selected = codes[mask]
    n = len(selected)
    bincount = np.bincount(selected[selected >= 0], minlength=len(categories))
    observed: dict[str, int] = dict.fromkeys(dist.weights, 0)
    for category, count in zip(categories, bincount.tolist(), strict=True):
        if count or category in observed:
            observed[category] = observed.get(category, 0) + count
    target = {c: dist.proportions().get(c, 0.0) for c in observed}
    if n == 0:
        return MarginalCheck(name, "categorical", 0, target, {}, 0.0, True, case, notes=("empty",))
    achieved = {c: observed[c] / n for c in observed}
    gaps = [abs(achieved[c] - target[c]) for c in observed]
    chi2 = 0.0
    for c, count in observed.items():
        expected = n * target[c]
        chi2 += (count - expected) ** 2 / expected if expected > 0 else (math.inf if count else 0)
    dof = len(dist.weights) - 1
    z = max(
        (abs(achieved[c] - p) / math.sqrt(p * (1 - p) / n) for c, p in target.items() if 0 < p < 1),
        default=0.0,
    )
    notes = (f"{int((selected < 0).sum())} null",) if (selected < 0).any() else ()
    return MarginalCheck(
        attribute=name,
        kind="categorical",
        n=n,
        target=target,
        achieved=achieved,
        max_abs_dev=max(gaps),
        passed=max(gaps) <= tolerance,
        case=case,
        chi2=chi2,
        dof=dof,
        p_value=chi2_sf(chi2, dof) if dof > 0 else None,
        tvd=0.5 * sum(gaps),
        z=z,
        notes=notes,
    )


def _numeric(
    name: str,
    dist: NormalDist | LognormalDist | UniformDist,
    columns: _Columns,
    mask: Mask,
    case: str | None,
    tolerance: float,
) -> MarginalCheck:
    values = columns.numbers(name)[mask].astype(np.float64)
    mean, std = target_moments(dist)
    target = {"mean": mean, "std": std}
    truncated = dist.min is not None or dist.max is not None
    if truncated and not isinstance(dist, UniformDist):
        notes: tuple[str, ...] = ("target includes truncation",)
    else:
        notes = ()
    if len(values) == 0:
        return MarginalCheck(name, "numeric", 0, target, {}, 0.0, True, case, notes=("empty",))
    achieved = {"mean": float(values.mean()), "std": float(values.std())}
    gap = abs(achieved["mean"] - mean)
    deviation = gap / std if std > 0 else gap
    return MarginalCheck(
        attribute=name,
        kind="numeric",
        n=len(values),
        target=target,
        achieved=achieved,
        max_abs_dev=deviation,
        passed=deviation <= tolerance,
        case=case,
        z=deviation * math.sqrt(len(values)) if std > 0 else None,
        notes=notes,
    )
