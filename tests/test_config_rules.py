"""Config rules: relative paths are relative to the config file, duplicate keys are refused,
settings that do not apply are errors (or, where harmless, warnings naming the field)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.config import ConfigError, SimulationConfig, inapplicable_settings, load_config

BASE: dict[str, Any] = {
    "population": {"size": 10, "groups": 1},
    "models": {"s": {"backend": "scripted", "responses": ["7"]}},
}


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def _write(data: dict[str, Any] | str, where: str = "cfg/run.yaml") -> Path:
        path = tmp_path / where
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return _write


def error_of(path: Path, overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return str(caught.value)


# --- relative paths ---------------------------------------------------------------------


def test_paths_in_a_scenarios_own_section_are_relative_to_the_config(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    """social.graph.path (a Path field, two levels down): absolute from the config's folder,
    so Ray actors and resumes elsewhere read the same edge list."""

    def social(path: str) -> dict[str, Any]:
        graph = {"kind": "edge_list", "path": path}
        return {**BASE, "scenario": "social_opinion", "social": {"graph": graph}}

    config = load_config(write(social("data/edges.csv")))
    assert config.scenario_settings.graph.path == tmp_path / "cfg" / "data" / "edges.csv"
    again = load_config(write(social(str(tmp_path / "e.csv"))))
    assert again.scenario_settings.graph.path == tmp_path / "e.csv"


def test_relative_paths_are_relative_to_the_config_file(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the working directory plays no part
    models = {
        "s": {"backend": "scripted", "responses": ["7"]},
        "l": {"backend": "local", "path": "models/m.gguf", "cache": "cache.sqlite"},
    }
    cfg = write({**BASE, "models": models, "out_dir": "out"})
    config = load_config(cfg)
    assert Path(config.out_dir).resolve() == tmp_path / "cfg" / "out"
    local = config.models["l"]
    assert local.backend == "local"
    assert local.path == str(tmp_path / "cfg" / "models" / "m.gguf")  # absolute: actors too
    assert local.cache == str(tmp_path / "cfg" / "cache.sqlite")
    # absolute and home paths are kept; the default out_dir follows the same rule
    models["l"] = {"backend": "local", "path": "~/m.gguf", "cache": "/var/c.sqlite"}
    config = load_config(write({**BASE, "models": models}))
    assert (config.models["l"].path, config.models["l"].cache) == ("~/m.gguf", "/var/c.sqlite")
    assert Path(config.out_dir).resolve() == tmp_path / "cfg" / "runs"


def test_population_file_is_relative_to_the_config_file(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    data = {"population_file": "pop.parquet", "models": BASE["models"]}
    config = load_config(write(data, "a/b/run.yaml"))
    assert config.population_file == str(tmp_path / "a" / "b" / "pop.parquet")


def test_cli_out_flag_is_relative_to_the_working_directory(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(write({**BASE, "out_dir": "in-file"}), {"out": "flag-runs"})
    assert config.out_dir == "flag-runs"


# --- duplicate keys ---------------------------------------------------------------------


def test_duplicate_keys_are_refused_naming_file_and_line(write: Callable[..., Path]) -> None:
    cfg = write("rounds: 2\npopulation: {size: 5}\nrounds: 3\n")
    message = error_of(cfg)
    assert message.startswith(f"{cfg}: invalid YAML (line 3, column 1)")
    assert "found duplicate key 'rounds'" in message
    nested = write("population:\n  size: 5\n  size: 6\n")
    assert "duplicate key 'size'" in error_of(nested)


def test_binary_config_is_a_clear_error(write: Callable[..., Path]) -> None:
    cfg = write("x")
    cfg.write_bytes(b"\xff\xfe\x00rounds")
    assert error_of(cfg) == f"{cfg}: cannot read: not UTF-8 text"


# --- settings that do not apply: errors --------------------------------------------------


def test_settings_of_another_scenario_are_an_error(write: Callable[..., Path]) -> None:
    message = error_of(write({**BASE, "chat": {"window": 3}}))
    assert "run.yaml: chat: " in message
    assert "applies to scenario chat_opinion only; this run's scenario is guess_two_thirds" in (
        message
    )
    chat = write({**BASE, "scenario": "chat_opinion", "game": {"ratio": 0.5}})
    assert "game: Value error, applies to scenario guess_two_thirds only" in error_of(chat)
    # a resolved config.yaml holds its own section only; one of megasim < 0.4 held every
    # built-in's section at its defaults: accepted, the other scenario's section dropped
    stored = SimulationConfig.model_validate(BASE).model_dump(mode="json")
    assert "game" in stored
    assert "chat" not in stored
    old = {**stored, "chat": {"statement": "x" * 3, "window": 8}}
    assert "applies to scenario chat_opinion" in error_of(write(old))
    old["chat"] = {"window": 8}
    assert load_config(write(old)).scenario == "guess_two_thirds"


def test_pins_of_shards_that_do_not_exist_are_an_error(write: Callable[..., Path]) -> None:
    runtime = {"kind": "ray", "shards": 2, "shard_resources": {0: {"a": 1}, 2: {"b": 1}}}
    message = error_of(write({**BASE, "runtime": runtime}))
    assert "runtime.shard_resources: " in message
    assert "shards [2] do not exist: runtime.shards is 2 (shards 0-1)" in message
    ok = {"kind": "ray", "shards": 3, "shard_resources": {2: {"b": 1}}}
    cfg = write({**BASE, "runtime": ok})
    assert load_config(cfg).runtime.shard_resources == {2: {"b": 1.0}}
    assert "shards [2] do not exist" in error_of(cfg, {"shards": 2})  # --shards lowers it
    empty = {"kind": "ray", "shards": 1, "shard_resources": {0: {}}}
    assert "at least one resource > 0" in error_of(write({**BASE, "runtime": empty}))


# --- settings that do not apply: warnings -----------------------------------------------


def test_harmless_inapplicable_settings_are_named() -> None:
    data = {
        **BASE,
        "models": {
            "s": {"backend": "surrogate", "cache": "c.sqlite", "retries": 5},
            "t": {"backend": "scripted", "temperature": 0.2, "merge": False},
            "l": {"backend": "local", "merge": False, "merge_window_s": 0.1},
            "ok": {"backend": "local", "temperature": 0.2, "cache": "c.sqlite"},
        },
        "runtime": {"address": "head:6379", "placement": "pack", "env_partitions": 4},
    }
    notes = inapplicable_settings(SimulationConfig.model_validate(data))
    fields = [note.split(":", 1)[0] for note in notes]
    assert fields == [
        "runtime.address",
        "runtime.placement",
        "runtime.env_partitions",
        "models.s.cache",
        "models.s.retries",
        "models.t.merge",
        "models.t.temperature",
        "models.l.merge_window_s",
    ]
    assert "does not apply to backend surrogate (a non-LLM stand-in" in notes[3]
    assert notes[0].endswith("applies to kind ray only; ignored (kind local)")
    assert inapplicable_settings(SimulationConfig.model_validate(BASE)) == []


def test_cli_prints_the_warnings_and_runs(write: Callable[..., Path], tmp_path: Path) -> None:
    models = {"s": {"backend": "surrogate", "temperature": 0.3}}
    cfg = write({**BASE, "models": models, "rounds": 1, "out_dir": str(tmp_path / "runs")})
    result = CliRunner().invoke(app, ["run", str(cfg), "--run-id", "w", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"warning: {cfg}: models.s.temperature: does not apply to backend surrogate" in (
        " ".join(result.output.split())
    )
    resumed = CliRunner().invoke(app, ["resume", str(tmp_path / "runs" / "w"), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert "models.s.temperature: does not apply" in " ".join(resumed.output.split())
