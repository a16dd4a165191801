"""Sampler properties: exact counts, conditional consistency, determinism, bounds, speed."""

from __future__ import annotations

import bisect
import itertools
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megasim.population import (
    PopulationSpec,
    PopulationSpecError,
    largest_remainder,
    load_population_spec,
    parse_population_spec,
    sample_population,
)

DEFAULTS = {"model": "stand-in", "prompt_variant": "P1"}
TEXT = pa.dictionary(pa.int32(), pa.string())
EDUCATION = {"dist": "categorical", "weights": {"high_school": 0.6, "bachelor": 0.3, "phd": 0.1}}
OCCUPATION = {
    "dist": "conditional",
    "given": "education",
    "cases": {
        "high_school": {"dist": "categorical", "weights": {"worker": 0.7, "artist": 0.3}},
        "phd": {"dist": "categorical", "weights": {"professor": 0.4, "economist": 0.6}},
        "default": {"dist": "categorical", "weights": {"engineer": 0.5, "doctor": 0.5}},
    },
}
ALLOWED = {
    "high_school": {"worker", "artist"},
    "phd": {"professor", "economist"},
    "bachelor": {"engineer", "doctor"},
}
CENSUS_LIKE: dict[str, Any] = {
    "size": 500,
    "groups": 4,
    "attributes": {
        "age": {"dist": "normal", "mean": 40, "std": 12, "min": 18, "max": 90, "integer": True},
        "income": {"dist": "lognormal", "mean": 10, "sigma": 0.5},
        "height": {"dist": "uniform", "min": 150, "max": 200},
        "gender": {"dist": "categorical", "weights": {"female": 0.5, "male": 0.5}},
        "country": {"dist": "constant", "value": "US"},
        "name": {"dist": "sequence", "values": ["Alice", "Bob", "Carol"]},
        "education": EDUCATION,
        "occupation": OCCUPATION,
        "age_group": {
            "dist": "derived",
            "from": "age",
            "bins": [18, 30, 45, 65, 91],
            "labels": ["18-29", "30-44", "45-64", "65+"],
        },
        "model": {"dist": "categorical", "weights": {"smollm2": 1.0}},
        "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P2": 0.5}},
    },
}
SPEC = parse_population_spec(CENSUS_LIKE)


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist()  # type: ignore[no-any-return]


def _reference_counts(weights: list[float], n: int) -> list[int]:
    """Largest remainder written independently: Hamilton's method on exact fractions."""
    total = sum(Fraction(w) for w in weights)
    quotas = [Fraction(w) / total * n for w in weights]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: quotas[i] - counts[i], reverse=True)
    # sorted() is stable, so equal remainders keep declaration order
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def test_columns_and_types() -> None:
    table = sample_population(SPEC, seed=1)
    assert table.column_names == ["agent_id", "group", *CENSUS_LIKE["attributes"]]
    schema = table.schema
    assert schema.field("agent_id").type == pa.int64()
    assert schema.field("group").type == pa.int32()
    assert schema.field("age").type == pa.int64()
    assert schema.field("income").type == pa.float64()
    assert schema.field("height").type == pa.float64()
    for name in ("gender", "country", "name", "education", "occupation", "age_group", "model"):
        assert schema.field(name).type == TEXT
    assert _column(table, "agent_id") == list(range(500))
    assert set(_column(table, "country")) == {"US"}
    assert set(_column(table, "model")) == {"smollm2"}


def test_defaults_fill_model_and_prompt_variant() -> None:
    spec = parse_population_spec({"size": 7, "attributes": {"x": {"dist": "constant", "value": 1}}})
    table = sample_population(spec, seed=0, defaults={**DEFAULTS, "scenario": "beauty"})
    assert table.column_names == ["agent_id", "group", "x", "model", "prompt_variant", "scenario"]
    assert set(_column(table, "model")) == {"stand-in"}
    assert table.schema.field("prompt_variant").type == TEXT
    with pytest.raises(PopulationSpecError, match=r"attributes\.model"):
        sample_population(spec, seed=0)
    with pytest.raises(PopulationSpecError, match=r"attributes\.prompt_variant"):
        sample_population(spec, seed=0, defaults={"model": "m"})
    with pytest.raises(ValueError, match="group are reserved"):
        sample_population(spec, seed=0, defaults={**DEFAULTS, "group": "g"})


def test_size_override() -> None:
    assert sample_population(SPEC, seed=1, size=37).num_rows == 37
    assert sample_population(SPEC, seed=1, size=0).num_rows == 0


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.floats(0.001, 1000.0), min_size=1, max_size=8),
    n=st.integers(0, 3000),
    seed=st.integers(0, 2**32),
)
def test_exact_counts_are_largest_remainder(weights: list[float], n: int, seed: int) -> None:
    categories = {f"c{i}": w for i, w in enumerate(weights)}
    spec = parse_population_spec(
        {
            "size": max(n, 1),
            "sampling": "exact",
            "attributes": {"x": {"dist": "categorical", "normalize": True, "weights": categories}},
        }
    )
    table = sample_population(spec, seed=seed, size=n, defaults=DEFAULTS)
    counts = Counter(_column(table, "x"))
    expected = _reference_counts(weights, n)
    assert [counts.get(c, 0) for c in categories] == expected
    assert largest_remainder(weights, n).tolist() == expected


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 2000), exact=st.booleans())
def test_conditional_children_belong_to_parent_case(seed: int, n: int, exact: bool) -> None:
    spec = parse_population_spec(
        {
            "size": n,
            "sampling": "exact" if exact else "random",
            "attributes": {"education": EDUCATION, "occupation": OCCUPATION},
        }
    )
    table = sample_population(spec, seed=seed, defaults=DEFAULTS)
    pairs = list(zip(_column(table, "education"), _column(table, "occupation"), strict=True))
    assert all(child in ALLOWED[parent] for parent, child in pairs)
    if exact:  # exact within each parent case as well
        for parent, case in (
            ("high_school", "high_school"),
            ("phd", "phd"),
            ("bachelor", "default"),
        ):
            children = [c for p, c in pairs if p == parent]
            weights = OCCUPATION["cases"][case]["weights"]
            got = Counter(children)
            assert [got.get(c, 0) for c in weights] == _reference_counts(
                list(weights.values()), len(children)
            )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**63), other=st.integers(0, 2**63))
def test_same_seed_same_table(seed: int, other: int) -> None:
    first = sample_population(SPEC, seed=seed)
    assert first.equals(sample_population(SPEC, seed=seed))
    if other != seed:
        assert not first.equals(sample_population(SPEC, seed=other))


def test_attribute_streams_are_independent() -> None:
    """Adding an attribute must not reshuffle the others (each has its own stream)."""
    smaller = dict(CENSUS_LIKE["attributes"])
    del smaller["height"]
    spec = parse_population_spec({**CENSUS_LIKE, "attributes": smaller})
    a = sample_population(SPEC, seed=5)
    b = sample_population(spec, seed=5)
    for name in ("age", "income", "gender", "occupation"):
        assert a.column(name).equals(b.column(name))


def test_derived_bins() -> None:
    table = sample_population(SPEC, seed=3, size=3000)
    labels = ["18-29", "30-44", "45-64", "65+"]
    bins = [18, 30, 45, 65, 91]
    for age, group in zip(_column(table, "age"), _column(table, "age_group"), strict=True):
        assert group == labels[bisect.bisect_right(bins, age) - 1]


@settings(max_examples=40, deadline=None)
@given(
    edges=st.lists(st.integers(-50, 50), min_size=2, max_size=7, unique=True).map(sorted),
    seed=st.integers(0, 2**32),
)
def test_derived_bins_property(edges: list[int], seed: int) -> None:
    """Bin i is [edges[i], edges[i+1]); values outside every bin are null."""
    spec = parse_population_spec(
        {
            "size": 500,
            "attributes": {
                "x": {"dist": "uniform", "min": -60, "max": 60, "integer": True},
                "b": {"dist": "derived", "from": "x", "bins": edges},
            },
        }
    )
    labels = [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(edges)]
    table = sample_population(spec, seed=seed, defaults=DEFAULTS)
    for x, b in zip(_column(table, "x"), _column(table, "b"), strict=True):
        inside = edges[0] <= x < edges[-1]
        assert b == (labels[bisect.bisect_right(edges, x) - 1] if inside else None)


@settings(max_examples=40, deadline=None)
@given(
    mean=st.floats(-100, 100),
    std=st.floats(0.1, 50),
    low=st.floats(-3, 0.5),
    width=st.floats(0.5, 6),
    integer=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_truncated_normal_within_bounds(
    mean: float, std: float, low: float, width: float, integer: bool, seed: int
) -> None:
    if integer:  # an integer must fit between the bounds with reasonable mass
        std = max(std, 2.0)
    lo, hi = mean + low * std, mean + (low + width) * std
    attributes = {"v": {"dist": "normal", "mean": mean, "std": std, "min": lo, "max": hi}}
    attributes["v"]["integer"] = integer
    spec = parse_population_spec({"size": 2000, "attributes": attributes})
    values = sample_population(spec, seed=seed, defaults=DEFAULTS).column("v").to_numpy()
    assert values.min() >= lo
    assert values.max() <= hi
    assert values.dtype == (np.int64 if integer else np.float64)


def test_lognormal_and_uniform_bounds() -> None:
    spec = parse_population_spec(
        {
            "size": 20000,
            "attributes": {
                "inc": {"dist": "lognormal", "mean": 10, "sigma": 1, "min": 5000, "max": 90000},
                "u": {"dist": "uniform", "min": 1, "max": 6, "integer": True},
            },
        }
    )
    table = sample_population(spec, seed=9, defaults=DEFAULTS)
    inc = table.column("inc").to_numpy()
    assert inc.min() >= 5000
    assert inc.max() <= 90000
    assert set(_column(table, "u")) == {1, 2, 3, 4, 5, 6}


def test_sequence_cycles_by_agent_id() -> None:
    names = _column(sample_population(SPEC, seed=2, size=10), "name")
    assert names == ["Alice", "Bob", "Carol"] * 3 + ["Alice"]


def test_round_robin_groups_are_balanced() -> None:
    table = sample_population(SPEC, seed=4, size=1003)
    sizes = Counter(_column(table, "group"))
    assert sorted(sizes) == [0, 1, 2, 3]
    assert max(sizes.values()) - min(sizes.values()) <= 1
    assert _column(table, "group")[:8] != [0, 1, 2, 3, 0, 1, 2, 3]  # shuffled first


def test_groups_from_attribute() -> None:
    spec = parse_population_spec({**CENSUS_LIKE, "groups": "education"})
    table = sample_population(spec, seed=4)
    order = list(EDUCATION["weights"])
    for group, education in zip(_column(table, "group"), _column(table, "education"), strict=True):
        assert order[group] == education


def test_integer_parent_without_case_fails_at_sampling() -> None:
    spec = parse_population_spec(
        {
            "size": 200,
            "attributes": {
                "k": {"dist": "uniform", "min": 1, "max": 3, "integer": True},
                "o": {"dist": "conditional", "given": "k", "cases": {"1": EDUCATION}},
            },
        }
    )
    with pytest.raises(PopulationSpecError, match=r"attributes\.o: no case for k = [23]"):
        sample_population(spec, seed=0, defaults=DEFAULTS)


def test_conditional_numeric_cases() -> None:
    spec = parse_population_spec(
        {
            "size": 4000,
            "attributes": {
                "education": EDUCATION,
                "income": {
                    "dist": "conditional",
                    "given": "education",
                    "cases": {
                        "phd": {"dist": "constant", "value": 7},
                        "default": {"dist": "uniform", "min": 0, "max": 1},
                    },
                },
            },
        }
    )
    table = sample_population(spec, seed=0, defaults=DEFAULTS)
    assert table.schema.field("income").type == pa.float64()
    for edu, income in zip(_column(table, "education"), _column(table, "income"), strict=True):
        assert income == 7 if edu == "phd" else 0 <= income < 1


@pytest.mark.parametrize("name", ["education", "occupation", "census"])
def test_examples_sample(examples_dir: Path, name: str) -> None:
    spec = load_population_spec(examples_dir / f"{name}.yaml")
    table = sample_population(spec, seed=0, defaults=DEFAULTS)
    assert table.num_rows == spec.size
    assert {"agent_id", "group", "model", "prompt_variant", *spec.attributes} <= set(
        table.column_names
    )


def test_education_example_is_balanced(examples_dir: Path) -> None:
    spec = load_population_spec(examples_dir / "education.yaml")
    counts = Counter(_column(sample_population(spec, seed=1, defaults=DEFAULTS), "education"))
    assert len(counts) == 6
    assert set(counts.values()) == {spec.size // 6}


def test_100k_agents_sample_quickly(examples_dir: Path) -> None:
    spec: PopulationSpec = load_population_spec(examples_dir / "census.yaml")
    start = time.perf_counter()
    table = sample_population(spec, seed=0, size=100_000)
    assert time.perf_counter() - start < 10.0
    assert table.num_rows == 100_000
