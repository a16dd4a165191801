"""The open worlds on the bundled LLM (SmolLM2 through llama.cpp), briefly: the stand-in
tests prove the rules at scale; these prove a real model's answers go through the same
prompts, schema, parsing and reductions."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from megasim.cli import app
from megasim.store.run_dir import RunDirectory

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("world", ["social_opinion", "segregation"])
def test_world_runs_on_the_bundled_model(world: str, tmp_path: Path) -> None:
    flags = ["--agents", "8", "--rounds", "1", "--out", str(tmp_path), "--run-id", "w"]
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / f"{world}.yaml"), *flags, "--quiet"])
    assert result.exit_code == 0, result.output
    run = RunDirectory(tmp_path / "w")
    decisions = run.read_decisions().to_pydict()
    assert set(decisions["model"]) == {"smollm2"}
    assert [m["active"] for m in run.read_metrics()] == [len(decisions["agent_id"])]
    assert sum(decisions["valid"]) >= 1  # a real model's answers parsed (SmolLM2 is small)
    assert all(t is not None for t in decisions["raw_text"])
    assert not any(t.startswith("[surrogate]") for t in decisions["raw_text"])
