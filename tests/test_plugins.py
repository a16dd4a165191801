"""Scenarios by reference: registered names, module:Class, ./file.py:Class, plugin packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.config import ConfigError, SimulationConfig, load_config
from megasim.plugins import ScenarioLoadError, load_scenario_class, registered_scenarios
from megasim.scenarios.base import Scenario
from megasim.store.run_dir import RunDirectory

EXAMPLE = Path(__file__).parents[1] / "examples" / "custom_scenario"
SCRIPTED = {"backend": "scripted", "responses": ['{"contribution": 4}', '{"contribution": 9}']}


def config_data(scenario: str, out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "pg",
        "scenario": scenario,
        "seed": 1,
        "rounds": 2,
        "population": {"size": 12, "groups": 2},
        "models": {"s": SCRIPTED},
        "out_dir": str(out),
        **extra,
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """The cookbook's example copied next to a config, as a user's project would hold it."""
    shutil.copy(EXAMPLE / "public_goods.py", tmp_path / "public_goods.py")
    return tmp_path


def test_builtins_are_registered_entry_points() -> None:
    registered = registered_scenarios()
    assert registered["guess_two_thirds"] == "megasim.scenarios.guess_two_thirds:GuessTwoThirds"
    assert load_scenario_class("chat_opinion").section == "chat"
    by_module = load_scenario_class("megasim.scenarios.chat_opinion:ChatOpinion")
    assert by_module is load_scenario_class("chat_opinion")


def test_a_file_scenario_relative_to_the_config_brings_its_section(world: Path) -> None:
    data = config_data("./public_goods.py:PublicGoods", world / "runs")
    data["public_goods"] = {"endowment": 20}
    config = load_config(write(world / "run.yaml", data))
    assert config.scenario == f"{world / 'public_goods.py'}:PublicGoods"  # absolute now
    assert config.scenario_settings.endowment == 20
    assert config.scenario_settings.multiplier == 1.6
    stored = config.model_dump(mode="json")  # what config.yaml holds; actors re-read it
    assert stored["public_goods"]["endowment"] == 20
    assert SimulationConfig.model_validate(stored).scenario_settings.endowment == 20


@pytest.mark.parametrize(
    ("scenario", "section", "expected"),
    [
        ("no_such_world", None, "scenario: Value error, unknown scenario 'no_such_world'"),
        ("nowhere.module:World", None, "no module named 'nowhere'"),
        ("./missing.py:World", None, "no such file"),
        ("./public_goods.py:Missing", None, "has no attribute 'Missing'"),
        ("./public_goods.py:PublicGoodsEnv", None, "is not a subclass of"),
        ("megasim.config:DEFAULT_MODELS", None, "is not a subclass of"),
        ("bad reference:", None, "is not a scenario reference"),
        ("./public_goods.py:PublicGoods", {"endowment": -1}, "public_goods.endowment:"),
        ("./public_goods.py:PublicGoods", {"endowmnet": 5}, "public_goods.endowmnet: Extra"),
    ],
)
def test_broken_references_and_sections_name_the_file_and_field(
    world: Path, scenario: str, section: dict[str, Any] | None, expected: str
) -> None:
    data = config_data(scenario, world / "runs")
    if section is not None:
        data["public_goods"] = section
    source = write(world / "run.yaml", data)
    with pytest.raises(ConfigError) as error:
        load_config(source)
    assert str(error.value).startswith(f"{source}: ")
    assert expected in str(error.value)


def test_a_scenario_that_fails_to_import_is_a_clear_error_exit_2(world: Path) -> None:
    (world / "broken.py").write_text("import megasim\nraise RuntimeError('half-written')\n")
    source = write(world / "run.yaml", config_data("./broken.py:World", world / "runs"))
    result = CliRunner().invoke(app, ["run", str(source), "--no-preflight", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "RuntimeError: half-written" in result.output
    assert "Traceback" not in result.output


def test_settings_and_section_go_together() -> None:
    class HalfDone(Scenario):
        section = "half"

    module = type(sys)("half_done_world")
    module.HalfDone = HalfDone  # type: ignore[attr-defined]
    sys.modules["half_done_world"] = module
    try:
        with pytest.raises(ScenarioLoadError, match="both section and settings_model"):
            load_scenario_class("half_done_world:HalfDone")
    finally:
        del sys.modules["half_done_world"]


def test_the_example_runs_from_the_cli_and_reports_its_own_table(world: Path) -> None:
    source = write(world / "run.yaml", config_data("./public_goods.py:PublicGoods", world / "r"))
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(source), "--run-id", "pg", "--quiet"])
    assert result.exit_code == 0, result.output
    assert " pot " in result.output  # the scenario's headline column
    decisions = RunDirectory(world / "r" / "pg").read_decisions().to_pydict()
    assert sorted(set(decisions["value"])) == [4.0, 9.0]
    report = runner.invoke(app, ["report", str(world / "r" / "pg")])
    assert report.exit_code == 0, report.output
    assert "Public goods: pot per round" in report.output
    assert (world / "r" / "pg" / "report" / "contributions.png").stat().st_size > 1000


def test_an_installed_plugin_package_is_found_by_name(world: Path, tmp_path: Path) -> None:
    """What ``pip install`` of a plugin leaves: a package and a dist-info folder whose
    entry_points.txt registers the scenario in the ``megasim.scenarios`` group."""
    site = tmp_path / "site"
    package = site / "pg_plugin"
    package.mkdir(parents=True)
    shutil.copy(EXAMPLE / "public_goods.py", package / "__init__.py")
    info = site / "pg_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pg-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[megasim.scenarios]\npublic_goods = pg_plugin:PublicGoods\n"
    )
    source = write(world / "run.yaml", config_data("public_goods", world / "r"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    command = [sys.executable, "-m", "megasim", "run", str(source), "--run-id", "pg", "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    stored = yaml.safe_load((world / "r" / "pg" / "config.yaml").read_text())
    assert stored["scenario"] == "public_goods"
    assert stored["public_goods"]["multiplier"] == 1.6


def test_a_scenario_reads_a_finished_runs_settings(world: Path) -> None:
    from megasim.run import run_simulation

    data = config_data("./public_goods.py:PublicGoods", world / "r")
    data["public_goods"] = {"multiplier": 3.0}
    config = load_config(write(world / "run.yaml", data))
    import asyncio

    result = asyncio.run(run_simulation(config, run_id="done"))
    settings = load_scenario_class(config.scenario).read_settings(result.run_dir.path)
    assert settings.multiplier == 3.0


def test_a_scenario_without_settings_of_its_own(tmp_path: Path) -> None:
    """No section: the plain run config, and the built-ins' sections are refused."""
    data = config_data("tests.runtime.test_mailbox:RelayScenario", tmp_path)
    config = SimulationConfig.model_validate(data)
    assert config.scenario_settings is None
    assert "game" not in config.model_dump()
    with pytest.raises(ValueError, match="applies to scenario guess_two_thirds only"):
        SimulationConfig.model_validate({**data, "game": {"ratio": 0.5}})


def test_a_scenario_that_cannot_build_its_world_is_a_clear_error(world: Path) -> None:
    """A setting the scenario's own code refuses (here: a graph over a missing column) is
    exit 2 naming the scenario, before any shard starts, not a traceback."""
    data = config_data("social_opinion", world / "r")
    data["social"] = {"graph": {"kind": "block_model", "attribute": "nope"}}
    result = CliRunner().invoke(app, ["run", str(write(world / "run.yaml", data)), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "scenario social_opinion: cannot build its environment" in result.output
    assert "nope" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("section", "model", "expected"),
    [
        ("_hidden", "Settings", "cannot be a config key"),
        ("model_config", "Settings", "cannot be a config key"),
        ("world", "dict", "must be a pydantic model class"),
    ],
)
def test_a_badly_declared_section_is_a_clear_error(
    tmp_path: Path, section: str, model: str, expected: str
) -> None:
    source = tmp_path / "odd.py"
    source.write_text(
        "from pydantic import BaseModel\n"
        "from megasim.scenarios.base import Scenario\n"
        "class Settings(BaseModel):\n    x: int = 1\n"
        f"class World(Scenario):\n    section = {section!r}\n    settings_model = {model}\n"
    )
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path / "run.yaml", config_data("./odd.py:World", tmp_path)))


def test_one_name_registered_twice_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from megasim import plugins

    twice = [
        EntryPoint("world", "a.b:World", plugins.ENTRY_POINT_GROUP),
        EntryPoint("world", "c.d:World", plugins.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: twice)
    with pytest.raises(ScenarioLoadError, match=r"registered twice: a\.b:World and c\.d:World"):
        plugins.registered_scenarios()
