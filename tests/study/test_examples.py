"""The example studies load, validate every cell and dry-run without a model server."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from megasim.cli import app
from megasim.study.estimate import estimate
from megasim.study.spec import load_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "studies"


def test_paper_study_is_the_prompt_grid() -> None:
    study = load_study(EXAMPLES / "paper.yaml", write=False)
    assert len(study.cells) == 2 * 10 * 2
    first = study.cells[0].config
    assert (first.game.memory, first.game.answer_mode) == ("full", "extract")
    assert {c.config.game.offset for c in study.cells} == {0.0, 5.0}
    rows = estimate(study)
    assert all(r.calls == 2 * 300 for r in rows)  # extract: at least two calls a decision


def test_smollm2_study_dry_runs() -> None:
    result = CliRunner().invoke(app, ["study", str(EXAMPLES / "smollm2.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "8 cells" in result.output
    study = load_study(EXAMPLES / "smollm2.yaml", write=False)
    assert {c.config.models["smollm2"].backend for c in study.cells} == {"local"}


def test_scalability_study_covers_sizes_runtimes_and_shards() -> None:
    study = load_study(EXAMPLES / "scalability.yaml", write=False)
    assert study.spec.asyncio_reference
    found = {
        (c.config.population.size if c.config.population else 0, c.config.runtime.kind,
         c.config.runtime.shards)
        for c in study.cells
    }  # fmt: skip
    assert found == {
        (n, kind, k) for n in (10_000, 100_000, 1_000_000) for kind in ("local", "ray")
        for k in (1, 4)
    }  # fmt: skip
    assert all(r.calls == 0 for r in estimate(study))  # a stand-in makes no model calls
