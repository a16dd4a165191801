"""Tests for megasim.config: the example loads, CLI overrides, and errors that name file + field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from megasim.config import ConfigError, SimulationConfig, apply_overrides, load_config
from megasim.model.config import LocalModelConfig, SurrogateModelConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "guess_two_thirds.yaml"


@pytest.fixture
def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    def write(data: dict[str, Any] | list[Any] | str, name: str = "run.yaml") -> Path:
        path = tmp_path / name
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


# --- the example -----------------------------------------------------------------------


def test_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, SimulationConfig)
    assert config.name == "guess_two_thirds"
    assert config.seed == 42
    assert config.rounds == 3
    assert config.game.ratio == pytest.approx(2 / 3)
    assert (config.game.offset, config.game.low, config.game.high) == (0.0, 0.0, 100.0)
    assert config.population.size == 100
    assert config.population.sampling == "exact"
    assert set(config.population.attributes) == {"prompt_variant"}
    assert list(config.models) == ["smollm2"]
    assert isinstance(config.models["smollm2"], LocalModelConfig)
    assert config.models["smollm2"].parallel == 4
    assert config.default_model == "smollm2"  # first model when not given
    assert config.runtime.kind == "local"
    assert Path(config.out_dir) == EXAMPLE.parents[1] / "runs"  # ../runs from examples/


def test_chat_example_loads() -> None:
    config = load_config(EXAMPLE.with_name("chat_opinion.yaml"))
    assert config.scenario == "chat_opinion"
    assert config.chat.window == 6
    assert config.runtime.env_partitions == 2
    assert config.population is not None
    assert {"age", "opinion"} <= set(config.population.attributes)


def test_minimal_config_uses_defaults(write_yaml: Callable[..., Path]) -> None:
    config = load_config(write_yaml({"population": {"size": 5}}))
    assert config.rounds == 3
    assert config.scenario == "guess_two_thirds"
    assert list(config.models) == ["smollm2"]
    assert config.default_model == "smollm2"
    assert config.runtime.shards == 1


def test_config_round_trips_through_model_dump(write_yaml: Callable[..., Path]) -> None:
    """The run directory stores the resolved config; it must load again unchanged."""
    config = load_config(EXAMPLE)
    again = load_config(write_yaml(config.model_dump(mode="json")))
    assert again == config


# --- overrides -------------------------------------------------------------------------


def test_overrides_agents_rounds_seed_out(tmp_path: Path) -> None:
    out = str(tmp_path / "elsewhere")
    config = load_config(EXAMPLE, {"agents": 7, "rounds": 9, "seed": 1, "out": out})
    assert config.population.size == 7
    assert config.population.sampling == "exact"  # the rest of the population block stays
    assert config.rounds == 9
    assert config.seed == 1
    assert config.out_dir == out


def test_none_overrides_change_nothing() -> None:
    overrides = {"agents": None, "rounds": None, "seed": None, "out": None, "model": None}
    assert load_config(EXAMPLE, overrides) == load_config(EXAMPLE)


def test_runtime_and_shards_overrides() -> None:
    config = load_config(EXAMPLE, {"runtime": "ray", "shards": 8})
    assert (config.runtime.kind, config.runtime.shards) == ("ray", 8)


def test_model_override_surrogate(write_yaml: Callable[..., Path]) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["population"]["attributes"]["model"] = {
        "dist": "categorical",
        "weights": {"smollm2": 1.0},
    }
    config = load_config(write_yaml(data), {"model": "surrogate"})
    assert isinstance(config.models["surrogate"], SurrogateModelConfig)
    assert "smollm2" in config.models  # configured models stay available
    assert config.default_model == "surrogate"
    assert config.force_model == "surrogate"  # every agent uses the forced model
    assert config.population is not None
    assert "prompt_variant" in config.population.attributes


def test_model_override_with_a_configured_model(write_yaml: Callable[..., Path]) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["models"]["fast"] = {"backend": "scripted", "responses": ["10"]}
    config = load_config(write_yaml(data), {"model": "fast"})
    assert config.default_model == "fast"
    assert set(config.models) == {"smollm2", "fast"}


def test_unknown_model_override_lists_known_models() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, {"model": "gpt-9"})
    message = str(info.value)
    assert "--model" in message
    assert "'gpt-9'" in message
    for known in ("smollm2", "local", "surrogate", "scripted"):
        assert known in message


def test_apply_overrides_does_not_mutate_its_input(example_data: dict[str, Any]) -> None:
    original = copy.deepcopy(example_data)
    apply_overrides(example_data, {"agents": 3, "model": "surrogate", "shards": 2})
    assert example_data == original


# --- errors ----------------------------------------------------------------------------


def _edit(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


@pytest.mark.parametrize(
    ("dotted", "value", "field", "hint"),
    [
        ("round", 3, "round", "Extra inputs are not permitted"),  # typo of `rounds`
        ("rounds", 0, "rounds", "greater than or equal to 1"),
        ("game.high", 0, "game.high", "must be greater than low"),
        ("game.low", 150, "game.high", "must be greater than low"),  # default high = 100
        ("game.ratio", 0, "game.ratio", "greater than 0"),
        ("models.smollm2.backend", "gguf", "models.smollm2.backend", "'gguf'"),
        ("models.smollm2.parallel", 0, "models.smollm2.parallel", "greater than or equal to 1"),
        ("models.smollm2.temperature", 3, "models.smollm2.temperature", "less than or equal"),
        ("default_model", "gpt", "default_model", "not in models (smollm2)"),
        ("runtime.kind", "k8s", "runtime.kind", "'local' or 'ray'"),
        ("population.size", 0, "population.size", "greater than or equal to 1"),
        (
            "population.attributes.prompt_variant.weights",
            {"P1": 0.5, "P3": 0.6},
            "population.attributes.prompt_variant.weights",
            "sum to 1.1",
        ),
    ],
)
def test_bad_config_names_file_and_field(
    write_yaml: Callable[..., Path],
    example_data: dict[str, Any],
    dotted: str,
    value: Any,
    field: str,
    hint: str,
) -> None:
    _edit(example_data, dotted, value)
    path = write_yaml(example_data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}: {field}: " in message, message
    assert hint in message, message


def test_several_errors_one_line_each(
    write_yaml: Callable[..., Path], example_data: dict[str, Any]
) -> None:
    example_data["rounds"] = 0
    example_data["seed"] = "forty-two"
    path = write_yaml(example_data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {"rounds", "seed"}


def test_missing_population(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml({"rounds": 2})
    with pytest.raises(ConfigError, match="population: give exactly one of") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_empty_models(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml({"population": {"size": 2}, "models": {}})
    with pytest.raises(ConfigError, match="at least one model") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_yaml_mentions_the_line(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml("name: x\nrounds: 3\ngame:\n  ratio: [0.5\n  low: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML")
    assert "line " in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


@pytest.mark.parametrize("text", ["- rounds: 3\n- seed: 1\n", "", "just a string\n"])
def test_top_level_not_a_mapping(write_yaml: Callable[..., Path], text: str) -> None:
    path = write_yaml(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: expected a mapping at the top level"


def test_population_file_relative_to_config(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml({"population_file": "pop.parquet"})
    config = load_config(path)
    assert config.population is None
    assert config.population_file == str(path.parent / "pop.parquet")
    with pytest.raises(ConfigError, match="--agents"):
        load_config(path, {"agents": 5})


def test_population_and_file_together_is_an_error(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml({"population": {"size": 3}, "population_file": "pop.parquet"})
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(path)
