"""Vectorised sampling of agent personas from a PopulationSpec.

Column types: ``agent_id`` int64, ``group`` int32; text attributes (categorical,
text constants/sequences, derived bins, text conditionals, ``model``,
``prompt_variant``) are ``dictionary<int32, string>``: they are built straight
from numpy codes without creating a million Python strings, take a few bytes per
agent and round-trip through Parquet as dictionary columns (``.cast(pa.string())``
where plain strings are needed). Integer attributes are int64, real ones float64,
bool constants/sequences bool. Derived values outside all bins are null.

Every attribute draws from its own random stream, keyed by seed and attribute
name, so adding or editing one attribute does not reshuffle the others.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from megasim.population._stats import largest_remainder, normal_mass
from megasim.population.base import DEFAULTED_ATTRIBUTES, RESERVED_COLUMNS, PopulationSpecError
from megasim.population.distributions import (
    DEFAULT_CASE,
    CategoricalDist,
    ConditionalDist,
    ConstantDist,
    DerivedDist,
    Distribution,
    LognormalDist,
    NormalDist,
    SequenceDist,
    UniformDist,
)
from megasim.population.spec import MAX_SIZE, PopulationSpec

Rows = npt.NDArray[np.int64] | None  # agent ids being sampled; None means all of 0..n-1
_DRAW_CHUNK = 4_000_000  # cap per rejection-sampling round, to bound memory
_TEXT = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True, slots=True)
class _Column:
    """Sampled values: int32 codes into ``categories`` (-1 = null) for text, else numbers."""

    values: npt.NDArray[Any]
    categories: tuple[str, ...] | None = None

    def at(self, rows: Rows) -> npt.NDArray[Any]:
        return self.values if rows is None else self.values[rows]

    def to_arrow(self) -> pa.Array:
        if self.categories is None:
            return pa.array(self.values)
        missing = self.values < 0
        indices = pa.array(self.values, mask=missing if missing.any() else None)
        return pa.DictionaryArray.from_arrays(indices, pa.array(self.categories, pa.string()))


def attribute_rng(seed: int, name: str) -> np.random.Generator:
    """PCG64 stream for one attribute, derived from the seed and a hash of the name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    key = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def sample_population(
    spec: PopulationSpec,
    seed: int,
    size: int | None = None,
    defaults: Mapping[str, str] | None = None,
) -> pa.Table:
    """Sample ``size`` (default ``spec.size``) agents; the same seed gives the same table.

    ``defaults`` fills attributes the spec does not define as constant text columns;
    ``model`` and ``prompt_variant`` must come from the spec or from ``defaults``.
    """
    n = spec.size if size is None else size
    if not 0 <= n <= MAX_SIZE:
        raise PopulationSpecError(f"size: must be 0-{MAX_SIZE:,}, got {n:,}")
    if seed < 0:  # numpy's seed sequences take non-negative integers only
        raise PopulationSpecError(f"seed: must be >= 0, got {seed}")
    extra = {k: str(v) for k, v in (defaults or {}).items() if k not in spec.attributes}
    for name in DEFAULTED_ATTRIBUTES:
        if name not in spec.attributes and name not in extra:
            raise PopulationSpecError(
                f"attributes.{name}: not in the population spec and no default was given"
            )
    if reserved := sorted(set(extra) & set(RESERVED_COLUMNS)):
        raise ValueError(f"defaults: {', '.join(reserved)} are reserved columns")
    try:
        return _sample_table(spec, n, seed, extra)
    except MemoryError as exc:  # numpy's allocation failures: too many agents for this host
        raise PopulationSpecError(f"size: {n:,} agents do not fit in memory: {exc}") from None


def _sample_table(spec: PopulationSpec, n: int, seed: int, extra: Mapping[str, str]) -> pa.Table:
    exact = spec.sampling == "exact"
    columns: dict[str, _Column] = {}
    for name in spec.sampling_order():
        rng = attribute_rng(seed, name)
        path = f"attributes.{name}"
        columns[name] = _sample(spec.attributes[name], n, None, columns, rng, exact, path)
    for name, value in extra.items():
        columns[name] = _Column(np.zeros(n, dtype=np.int32), (value,))
    arrays: dict[str, pa.Array] = {
        "agent_id": pa.array(np.arange(n, dtype=np.int64)),
        "group": pa.array(_groups(spec, n, seed, columns)),
    }
    for name in [*spec.attributes, *extra]:
        arrays[name] = columns[name].to_arrow()
    meta = {"megasim.population.seed": str(seed), "megasim.population.sampling": spec.sampling}
    return pa.Table.from_arrays(list(arrays.values()), names=list(arrays), metadata=meta)


def _groups(
    spec: PopulationSpec, n: int, seed: int, columns: Mapping[str, _Column]
) -> npt.NDArray[np.int32]:
    """Group ids: round-robin over a shuffled order, or one group per attribute value."""
    if isinstance(spec.groups, int):
        group = (np.arange(n, dtype=np.int64) % spec.groups).astype(np.int32)
        attribute_rng(seed, "group").shuffle(group)  # "group" is reserved: no attribute shares it
        return group
    column = columns[spec.groups]
    if column.categories is not None:
        if (column.values < 0).any():
            raise PopulationSpecError(f"groups: {spec.groups!r} has null values (outside bins)")
        return column.values.astype(np.int32)
    return np.unique(column.values, return_inverse=True)[1].astype(np.int32)


def _sample(
    dist: Distribution,
    n: int,
    rows: Rows,
    columns: Mapping[str, _Column],
    rng: np.random.Generator,
    exact: bool,
    path: str,
) -> _Column:
    """Sample ``n`` values of ``dist`` for agents ``rows``."""
    if isinstance(dist, NormalDist):
        lo, hi = dist.draw_bounds()
        return _numeric(dist, _truncated_normal(rng, dist.mean, dist.std, lo, hi, n))
    if isinstance(dist, LognormalDist):
        lo, hi = dist.log_bounds()
        return _numeric(dist, np.exp(_truncated_normal(rng, dist.mean, dist.sigma, lo, hi, n)))
    if isinstance(dist, UniformDist):
        if dist.integer:
            lo, hi = dist.integer_bounds()
            return _Column(rng.integers(int(lo), int(hi), size=n, endpoint=True, dtype=np.int64))
        return _Column(rng.uniform(dist.min, dist.max, size=n))
    if isinstance(dist, CategoricalDist):
        return _categorical(dist, n, rng, exact)
    if isinstance(dist, ConstantDist):
        return _sequence([dist.value], np.zeros(n, dtype=np.int64))
    if isinstance(dist, SequenceDist):
        ids = np.arange(n, dtype=np.int64) if rows is None else rows
        return _sequence(dist.values, ids % len(dist.values))
    if isinstance(dist, DerivedDist):
        edges = np.asarray(dist.bins, dtype=np.float64)
        codes = np.searchsorted(edges, columns[dist.from_].at(rows), side="right") - 1
        codes[codes >= len(edges) - 1] = -1  # at or above the last edge, or NaN
        return _Column(codes.astype(np.int32), tuple(dist.bin_labels()))
    return _conditional(dist, n, rows, columns, rng, exact, path)


def _truncated_normal(
    rng: np.random.Generator,
    mean: float,
    std: float,
    lo: float,
    hi: float,
    n: int,
) -> npt.NDArray[np.float64]:
    """Rejection sampling, oversampled by the in-bounds mass so it takes ~1-2 rounds."""
    if math.isinf(lo) and math.isinf(hi):
        return rng.normal(mean, std, size=n)
    mass = normal_mass(mean, std, lo, hi)
    out = np.empty(n, dtype=np.float64)
    filled = 0
    while filled < n:
        need = n - filled
        draws = rng.normal(mean, std, size=min(int(need / mass * 1.05) + 64, _DRAW_CHUNK))
        kept = draws[(draws >= lo) & (draws <= hi)][:need]
        out[filled : filled + len(kept)] = kept
        filled += len(kept)
    return out


def _numeric(dist: NormalDist | LognormalDist, values: npt.NDArray[np.float64]) -> _Column:
    if not dist.integer:
        return _Column(values)
    lo, hi = dist.integer_bounds()
    return _Column(np.clip(np.rint(values), lo, hi).astype(np.int64))


def _categorical(dist: CategoricalDist, n: int, rng: np.random.Generator, exact: bool) -> _Column:
    weights = list(dist.weights.values())
    if exact:
        counts = largest_remainder(weights, n)
        codes = np.repeat(np.arange(len(weights), dtype=np.int32), counts)
        rng.shuffle(codes)
    else:
        cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
        cdf /= cdf[-1]
        cdf[-1] = 1.0  # rng.random() < 1, so the last category catches the rest
        codes = np.searchsorted(cdf, rng.random(n), side="right").astype(np.int32)
    return _Column(codes, tuple(dist.weights))


def _sequence(values: list[bool | int | float | str], index: npt.NDArray[np.int64]) -> _Column:
    if all(isinstance(v, str) for v in values):
        categories = tuple(dict.fromkeys(str(v) for v in values))
        lookup = np.asarray([categories.index(str(v)) for v in values], dtype=np.int32)
        return _Column(lookup[index], categories)
    if all(isinstance(v, bool) for v in values):
        return _Column(np.asarray(values, dtype=np.bool_)[index])
    is_int = all(isinstance(v, int) for v in values)
    return _Column(np.asarray(values, dtype=np.int64 if is_int else np.float64)[index])


def _conditional(
    dist: ConditionalDist,
    n: int,
    rows: Rows,
    columns: Mapping[str, _Column],
    rng: np.random.Generator,
    exact: bool,
    path: str,
) -> _Column:
    """One vectorised draw per case, over the agents whose parent has that value."""
    parent = columns[dist.given]
    parent_values = parent.at(rows)
    matched = np.zeros(n, dtype=np.bool_)
    parts: list[tuple[npt.NDArray[np.bool_], _Column]] = []
    keys = [k for k in dist.cases if k != DEFAULT_CASE]
    masks = [_parent_mask(parent, parent_values, key) for key in keys]
    for mask in masks:
        matched |= mask
    if DEFAULT_CASE in dist.cases:
        keys.append(DEFAULT_CASE)
        masks.append(~matched)
    elif not matched.all():
        example = parent_values[~matched][0]
        shown = "null" if parent.categories is not None else example
        raise PopulationSpecError(
            f"{path}: no case for {dist.given} = {shown} and no '{DEFAULT_CASE}' case"
        )
    for key, mask in zip(keys, masks, strict=True):
        sub = np.flatnonzero(mask)
        sub_rows = sub if rows is None else rows[sub]
        case = dist.cases[key]
        sampled = _sample(case, len(sub), sub_rows, columns, rng, exact, f"{path}.cases.{key}")
        parts.append((mask, sampled))
    return _combine(parts, n)


def _parent_mask(parent: _Column, values: npt.NDArray[Any], key: str) -> npt.NDArray[np.bool_]:
    if parent.categories is not None:
        if key not in parent.categories:
            return np.zeros(len(values), dtype=np.bool_)
        return values == parent.categories.index(key)  # type: ignore[no-any-return]
    if values.dtype == np.bool_:
        return values == (key == "true")  # type: ignore[no-any-return]
    return values == int(key)  # type: ignore[no-any-return]


def _combine(parts: list[tuple[npt.NDArray[np.bool_], _Column]], n: int) -> _Column:
    """Scatter per-case columns back; text cases share one union of categories."""
    if parts and parts[0][1].categories is not None:
        union: dict[str, int] = {}
        for _, col in parts:
            for category in col.categories or ():
                union.setdefault(category, len(union))
        codes = np.full(n, -1, dtype=np.int32)
        for mask, col in parts:
            remap = np.asarray([union[c] for c in col.categories or ()] + [-1], dtype=np.int32)
            codes[mask] = remap[col.values]  # code -1 picks the trailing -1
        return _Column(codes, tuple(union))
    dtype = np.result_type(*[col.values.dtype for _, col in parts]) if parts else np.float64
    values = np.zeros(n, dtype=dtype)
    for mask, col in parts:
        values[mask] = col.values
    return _Column(values)
