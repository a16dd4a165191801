"""Spec validation: every bad spec names the file and the field to fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from megasim.population import PopulationSpecError, load_population_spec, parse_population_spec

WriteSpec = Callable[..., Path]

EDU = {"dist": "categorical", "weights": {"high_school": 0.5, "phd": 0.5}}


def _spec(**attributes: Any) -> dict[str, Any]:
    return {"size": 100, "attributes": attributes}


def _error(write_spec: WriteSpec, spec: dict[str, Any] | str) -> str:
    path = write_spec(spec)
    with pytest.raises(PopulationSpecError) as info:
        load_population_spec(path)
    message = str(info.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize("name", ["education", "occupation", "census"])
def test_examples_load(examples_dir: Path, name: str) -> None:
    spec = load_population_spec(examples_dir / f"{name}.yaml")
    assert spec.size > 0
    assert spec.attributes


def test_education_example_is_exact_and_equal(examples_dir: Path) -> None:
    spec = load_population_spec(examples_dir / "education.yaml")
    education = spec.attributes["education"]
    assert spec.sampling == "exact"
    assert education.dist == "categorical"
    assert len(education.weights) == 6
    assert len(set(education.weights.values())) == 1


def test_pydantic_message_has_file_and_field(write_spec: WriteSpec) -> None:
    spec = _spec(age={"dist": "normal", "mean": 40, "std": 0})
    path = write_spec(spec)
    with pytest.raises(PopulationSpecError) as info:
        load_population_spec(path)
    assert str(info.value) == f"{path}: attributes.age.std: Input should be greater than 0"


@pytest.mark.parametrize(
    ("attributes", "field", "words"),
    [
        (
            {"g": {"dist": "categorical", "weights": {"a": 0.5, "b": 0.4}}},
            "attributes.g.weights",
            ["sum to 0.9", "normalize"],
        ),
        (
            {
                "education": EDU,
                "occupation": {
                    "dist": "conditional",
                    "given": "education",
                    "cases": {
                        "high_school": {"dist": "constant", "value": "worker"},
                        "phd": {"dist": "categorical", "weights": {"prof": 0.7, "econ": 0.7}},
                    },
                },
            },
            "attributes.occupation.cases.phd.weights",
            ["sum to 1.4"],
        ),
        (
            {"age": {"dist": "gaussian", "mean": 1, "std": 1}},
            "attributes.age.dist",
            ["gaussian", "normal", "lognormal", "categorical", "conditional", "derived"],
        ),
        ({"age": {"mean": 1, "std": 1}}, "attributes.age", ["missing 'dist'"]),
        (
            {"g": {"dist": "categorical", "weigths": {"a": 1.0}}},
            "attributes.g.weigths",
            ["unknown key"],
        ),
        (
            {"o": {"dist": "conditional", "given": "educaton", "cases": {"x": EDU}}},
            "attributes.o.given",
            ["unknown attribute 'educaton'"],
        ),
        (
            {"band": {"dist": "derived", "from": "agee", "bins": [0, 1]}},
            "attributes.band.from",
            ["unknown attribute 'agee'"],
        ),
        (
            {"g": {"dist": "categorical", "weights": {"a": -1.0, "b": 2.0}}},
            "attributes.g.weights.a",
            ["greater than 0"],
        ),
        (
            {"age": {"dist": "normal", "mean": 40, "std": 1, "min": 90, "max": 18}},
            "attributes.age",
            ["min (90) must be below max (18)"],
        ),
        (
            {"age": {"dist": "normal", "mean": 0, "std": 1, "min": 50, "max": 60}},
            "attributes.age",
            ["mass"],
        ),
        (
            {
                "age": {"dist": "uniform", "min": 0, "max": 9},
                "b": {"dist": "derived", "from": "age", "bins": [0, 5, 10], "labels": ["young"]},
            },
            "attributes.b",
            ["1 labels for 2 bins"],
        ),
        (
            {
                "age": {"dist": "uniform", "min": 0, "max": 9},
                "b": {"dist": "derived", "from": "age", "bins": [0, 5, 5]},
            },
            "attributes.b",
            ["strictly increasing"],
        ),
        (
            {"e": EDU, "b": {"dist": "derived", "from": "e", "bins": [0, 5]}},
            "attributes.b.from",
            ["need a number"],
        ),
        (
            {
                "h": {"dist": "uniform", "min": 0, "max": 1},
                "o": {"dist": "conditional", "given": "h", "cases": {"1": EDU}},
            },
            "attributes.o.given",
            ["real-valued", "derived"],
        ),
        (
            {"e": EDU, "o": {"dist": "conditional", "given": "e", "cases": {"phdd": EDU}}},
            "attributes.o.cases.phdd",
            ["not a value of 'e'", "high_school, phd"],
        ),
        (
            {"e": EDU, "o": {"dist": "conditional", "given": "e", "cases": {"phd": EDU}}},
            "attributes.o.cases",
            ["no case for e = high_school", "default"],
        ),
        (
            {
                "e": EDU,
                "o": {
                    "dist": "conditional",
                    "given": "e",
                    "cases": {"phd": EDU, "default": {"dist": "constant", "value": 3}},
                },
            },
            "attributes.o.cases",
            ["mix value types"],
        ),
        ({"model": {"dist": "constant", "value": 7}}, "attributes.model", ["must be text"]),
        ({"agent_id": {"dist": "constant", "value": 7}}, "attributes.agent_id", ["reserved"]),
        (
            {"s": {"dist": "sequence", "values": ["a", 1]}},
            "attributes.s",
            ["mix types"],
        ),
    ],
)
def test_bad_attribute_names_field(
    write_spec: WriteSpec, attributes: dict[str, Any], field: str, words: list[str]
) -> None:
    message = _error(write_spec, _spec(**attributes))
    assert f": {field}: " in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("attributes", "cycle"),
    [
        ({"a": {"dist": "conditional", "given": "a", "cases": {"default": EDU}}}, "a -> a"),
        (
            {
                "a": {"dist": "conditional", "given": "b", "cases": {"default": EDU}},
                "b": {"dist": "conditional", "given": "c", "cases": {"default": EDU}},
                "c": {
                    "dist": "conditional",
                    "given": "x",
                    "cases": {"default": {"dist": "derived", "from": "a", "bins": [0, 1]}},
                },
                "x": EDU,
            },
            "a -> b -> c -> a",
        ),
    ],
)
def test_circular_references(write_spec: WriteSpec, attributes: dict[str, Any], cycle: str) -> None:
    message = _error(write_spec, _spec(**attributes))
    assert "circular reference" in message
    assert cycle in message


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": 10, "sampleing": "exact"}, "sampleing"),
        ({"size": 10, "sampling": "stratified"}, "sampling"),
        ({"size": 10, "groups": 0}, "groups"),
        ({"size": 10, "groups": "team"}, "groups"),
    ],
)
def test_bad_top_level(write_spec: WriteSpec, spec: dict[str, Any], field: str) -> None:
    assert f": {field}: " in _error(write_spec, spec)


def test_normalize_rescales_weights() -> None:
    spec = parse_population_spec(
        _spec(g={"dist": "categorical", "normalize": True, "weights": {"a": 3, "b": 1}})
    )
    assert spec.attributes["g"].proportions() == {"a": 0.75, "b": 0.25}


def test_weights_within_tolerance_are_accepted() -> None:
    parse_population_spec(_spec(g={"dist": "categorical", "weights": {"a": 0.3333333, "b": 2 / 3}}))


def test_yaml_syntax_error_names_line(write_spec: WriteSpec) -> None:
    message = _error(write_spec, "size: 10\nattributes:\n  age: {dist: normal, mean: 4\n")
    assert "line 4" in message or "line 3" in message
    assert "YAML" in message


def test_duplicate_key_is_an_error(write_spec: WriteSpec) -> None:
    text = (
        "size: 10\nattributes:\n  a: {dist: constant, value: x}\n  a: {dist: constant, value: y}\n"
    )
    message = _error(write_spec, text)
    assert "duplicate key 'a'" in message
    assert "line 4" in message


def test_empty_and_missing_files(write_spec: WriteSpec, tmp_path: Path) -> None:
    assert "empty" in _error(write_spec, "")
    assert "mapping" in _error(write_spec, "- 1\n- 2\n")
    with pytest.raises(PopulationSpecError, match=r"nope\.yaml: cannot read"):
        load_population_spec(tmp_path / "nope.yaml")


def test_yaml_numeric_case_keys_match_integer_parent() -> None:
    spec = parse_population_spec(
        {
            "size": 10,
            "attributes": {
                "k": {"dist": "uniform", "min": 1, "max": 2, "integer": True},
                "o": {
                    "dist": "conditional",
                    "given": "k",
                    "cases": {1: {"dist": "constant", "value": "one"}, "default": EDU},
                },
            },
        }
    )
    assert list(spec.attributes["o"].cases) == ["1", "default"]


def test_sampling_order_puts_parents_first() -> None:
    spec = parse_population_spec(
        _spec(
            band={"dist": "derived", "from": "age", "bins": [0, 50, 100]},
            job={"dist": "conditional", "given": "band", "cases": {"default": EDU}},
            age={"dist": "uniform", "min": 0, "max": 99},
        )
    )
    assert spec.sampling_order() == ["age", "band", "job"]
    assert spec.kinds() == {"band": "str", "job": "str", "age": "float"}
