"""Marginal checks: statistics are right, biased tables fail, rendering works."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console

from megasim.population import (
    check_marginals,
    load_population_spec,
    parse_population_spec,
    render_checks,
    sample_population,
)
from megasim.population._stats import chi2_sf, normal_mass, truncated_normal_moments
from megasim.population.checks import target_moments

DEFAULTS = {"model": "stand-in", "prompt_variant": "P1"}


@pytest.mark.parametrize(
    ("x", "dof", "expected"),
    [
        (3.841458820694124, 1, 0.05),
        (11.070497693516351, 5, 0.05),
        (2.0, 2, math.exp(-1.0)),
        (0.5, 3, 0.9188914440765511),
        (30.0, 10, 0.0008566412),
        (0.0, 4, 1.0),
    ],
)
def test_chi2_sf_known_values(x: float, dof: int, expected: float) -> None:
    assert chi2_sf(x, dof) == pytest.approx(expected, rel=1e-6)


def test_truncated_moments_match_a_large_sample() -> None:
    rng = np.random.default_rng(0)
    draws = rng.normal(40, 12, 4_000_000)
    kept = draws[(draws >= 18) & (draws <= 90)]
    mean, std = truncated_normal_moments(40, 12, 18, 90)
    assert mean == pytest.approx(kept.mean(), abs=0.02)
    assert std == pytest.approx(kept.std(), abs=0.02)
    assert mean > 40  # cutting the lower tail harder moves the mean up
    assert normal_mass(0, 1, -1.96, 1.96) == pytest.approx(0.95, abs=1e-4)


def test_untruncated_targets_are_closed_form() -> None:
    spec = parse_population_spec(
        {
            "size": 10,
            "attributes": {
                "n": {"dist": "normal", "mean": 3, "std": 2},
                "l": {"dist": "lognormal", "mean": 1, "sigma": 0.5},
                "u": {"dist": "uniform", "min": 1, "max": 6, "integer": True},
            },
        }
    )
    assert target_moments(spec.attributes["n"]) == (3, 2)
    mean, _ = target_moments(spec.attributes["l"])
    assert mean == pytest.approx(math.exp(1.125))
    assert target_moments(spec.attributes["u"]) == pytest.approx((3.5, math.sqrt(35 / 12)))


def test_exact_sample_passes_everything(examples_dir: Path) -> None:
    spec = load_population_spec(examples_dir / "education.yaml")
    table = sample_population(spec, seed=0, defaults=DEFAULTS)
    (check,) = check_marginals(table, spec, tolerance=0.0)
    assert check.passed
    assert check.max_abs_dev == 0
    assert check.chi2 == 0
    assert check.p_value == 1.0
    assert check.n == spec.size


def test_census_checks_cover_cases_and_pass(examples_dir: Path) -> None:
    spec = load_population_spec(examples_dir / "census.yaml")
    table = sample_population(spec, seed=0, size=200_000)
    checks = check_marginals(table, spec, tolerance=0.03)
    labels = {c.label for c in checks}
    assert {"age", "gender", "education", "model", "prompt_variant"} <= labels
    assert "occupation | education=PhD" in labels
    assert "occupation | education=<other>" in labels
    assert "income | occupation=doctor" in labels
    # small cases (a few thousand agents) may miss the tolerance by sampling noise only
    noisy = [c for c in checks if not c.passed]
    assert all(c.z is not None and c.z < 4 for c in noisy), noisy
    assert all(c.passed for c in checks if c.case is None and c.kind == "categorical")
    age = next(c for c in checks if c.attribute == "age")
    assert age.kind == "numeric"
    assert age.target["mean"] > 42  # truncated at 18 and 90, so above the untruncated 42
    assert "target includes truncation" in age.notes


def _table(values: list[str], dictionary: bool) -> pa.Table:
    array = pa.array(values, pa.string())
    return pa.table({"g": array.dictionary_encode() if dictionary else array})


@pytest.mark.parametrize("dictionary", [True, False])
def test_biased_table_fails(dictionary: bool) -> None:
    spec = parse_population_spec(
        {
            "size": 1000,
            "attributes": {"g": {"dist": "categorical", "weights": {"a": 0.5, "b": 0.5}}},
        }
    )
    (check,) = check_marginals(_table(["a"] * 700 + ["b"] * 300, dictionary), spec)
    assert not check.passed
    assert check.achieved == {"a": 0.7, "b": 0.3}
    assert check.max_abs_dev == pytest.approx(0.2)
    assert check.tvd == pytest.approx(0.2)
    assert check.chi2 == pytest.approx(160.0)
    assert check.dof == 1
    assert check.p_value is not None
    assert check.p_value < 1e-10
    assert check.z is not None
    assert check.z > 10


def test_unexpected_category_is_reported() -> None:
    spec = parse_population_spec(
        {"size": 4, "attributes": {"g": {"dist": "categorical", "weights": {"a": 1.0}}}}
    )
    (check,) = check_marginals(_table(["a", "a", "a", "zz"], True), spec)
    assert check.target["zz"] == 0.0
    assert check.achieved["zz"] == 0.25
    assert check.chi2 == math.inf
    assert not check.passed


def test_numeric_check_uses_standardised_mean_gap() -> None:
    spec = parse_population_spec(
        {"size": 4, "attributes": {"x": {"dist": "normal", "mean": 10, "std": 2}}}
    )
    (check,) = check_marginals(pa.table({"x": [11.0, 11.0, 11.0, 11.0]}), spec, tolerance=0.4)
    assert check.max_abs_dev == pytest.approx(0.5)
    assert not check.passed
    assert check.achieved == {"mean": 11.0, "std": 0.0}


def test_missing_column_is_an_error() -> None:
    spec = parse_population_spec(
        {"size": 4, "attributes": {"x": {"dist": "normal", "mean": 10, "std": 2}}}
    )
    with pytest.raises(ValueError, match="lacks attribute columns: x"):
        check_marginals(pa.table({"y": [1.0]}), spec)


def test_render_checks(examples_dir: Path) -> None:
    spec = load_population_spec(examples_dir / "census.yaml")
    checks = check_marginals(sample_population(spec, seed=1), spec)
    console = Console(record=True, width=200)
    render_checks(checks, console)
    text = console.export_text()
    assert "Population marginals" in text
    assert "occupation | education=" in text
    assert "  PhD " in text
    assert "Marginal tests" in text
    assert f"/{len(checks)} marginal checks passed" in text


def test_render_checks_fits_80_columns(examples_dir: Path) -> None:
    spec = load_population_spec(examples_dir / "census.yaml")
    checks = check_marginals(sample_population(spec, seed=0, size=20_000), spec)
    console = Console(record=True, width=80)
    render_checks(checks, console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for word in ("occupation", "high school", "female", "game theory professor"):
        assert word in text
    # one row per category value, its target and achieved proportion side by side
    female = next(line for line in text.splitlines() if " female " in line)
    assert "0.5050" in female
    # one tests row per check, each with its n and verdict
    verdicts = [line.split()[-1] for line in text.splitlines() if line.strip()]
    assert sum(v in ("pass", "FAIL") for v in verdicts) == len(checks)
    assert "20,000" in text
    assert f"{sum(c.passed for c in checks)}/{len(checks)} marginal checks passed" in text


@pytest.mark.parametrize("width", [40, 60])
def test_render_checks_folds_rather_than_cuts(examples_dir: Path, width: int) -> None:
    spec = load_population_spec(examples_dir / "census.yaml")
    checks = check_marginals(sample_population(spec, seed=0, size=2_000), spec)
    console = Console(record=True, width=width)
    render_checks(checks, console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_render_checks_shows_failures_and_odd_names() -> None:
    spec = parse_population_spec(
        {
            "size": 1000,
            "attributes": {"g": {"dist": "categorical", "weights": {"[a]": 0.5, "b": 0.5}}},
        }
    )
    checks = check_marginals(_table(["[a]"] * 700 + ["b"] * 300, True), spec)
    console = Console(record=True, width=80)
    render_checks(checks, console)
    text = console.export_text()
    assert "[a]" in text  # category names are not read as rich markup
    assert "FAIL" in text
    assert "+0.2000" in text
    assert "<0.001" in text
    assert "0/1 marginal checks passed" in text
