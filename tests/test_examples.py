"""Every run config under examples/ runs end to end (surrogate stand-in, small) and its
report renders, built-in and user scenarios alike, through the CLI a user types."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("custom_scenario/*.yaml")])


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_example_runs_and_reports(config: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    flags = ["--model", "surrogate", "--agents", "60", "--rounds", "2", "--out", str(tmp_path)]
    flags += ["--run-id", "x", "--no-preflight", "--quiet"]
    result = runner.invoke(app, ["run", str(config), *flags])
    assert result.exit_code == 0, result.output
    assert "non-LLM stand-in" in result.output
    report = runner.invoke(app, ["report", str(tmp_path / "x")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "x" / "report" / "summary.json").is_file()


def test_every_scenario_has_an_example() -> None:
    from megasim.plugins import registered_scenarios

    named = {yaml.safe_load(c.read_text())["scenario"] for c in CONFIGS}
    assert set(registered_scenarios()) <= named


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_scenario_says_truly_whether_its_environment_has_keyed_state(config: Path) -> None:
    """``Scenario.keyed_state`` (which decides the env_partitions warning) matches the
    environment the scenario builds."""
    from megasim.config import load_config
    from megasim.plugins import make_scenario
    from megasim.run import build_population

    cfg = load_config(config, {"agents": 30, "model": "surrogate"})
    scenario = make_scenario(cfg.scenario)
    assert type(scenario).keyed_state == scenario.build_env(cfg, build_population(cfg)).keyed
