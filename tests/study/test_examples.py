"""The example studies load, validate every cell and dry-run without a model server."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from megasim.cli import app
from megasim.study.estimate import estimate
from megasim.study.spec import load_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "studies"


def test_paper_study_holds_the_papers_grids() -> None:
    study = load_study(EXAMPLES / "paper.yaml", write=False)
    by_grid: dict[str, int] = {}
    for cell in study.cells:
        grid = cell.id.split("-")[1]
        by_grid[grid] = by_grid.get(grid, 0) + 1
    assert by_grid == {"prompts": 40, "education": 1, "professions": 1, "mixture": 1,
                       "temperature": 9}  # fmt: skip
    first = study.cells[0].config
    assert (first.game.memory, first.game.answer_mode) == ("full", "extract")
    prompts = [c for c in study.cells if "-prompts-" in c.id]
    assert {c.config.game.offset for c in prompts} == {0.0, 5.0}
    temperatures = sorted(
        (c.config.force_model, c.config.models[c.config.force_model or ""].temperature)
        for c in study.cells if "temperature" in c.id
    )  # fmt: skip
    assert temperatures[:4] == [("mixtral-8x22b", t) for t in (0.0, 0.05, 0.25, 0.5)]
    rows = estimate(study)
    assert all(r.calls == 2 * r.decisions for r in rows)  # extract: at least two a decision


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


def test_paper_background_and_mixture_grids_run_on_scripted_stand_ins(tmp_path: Path) -> None:
    """paper.yaml's education, professions and mixture grids, shrunk and with its three
    models replaced by scripted stand-ins of the same names: the background and make-up
    reach the prompts, the report has its attribute and mixture tables."""
    import yaml

    study = yaml.safe_load((EXAMPLES / "paper.yaml").read_text())
    study["config"]["models"] = {
        name: {"backend": "scripted", "responses": answers}
        for name, answers in (("qwen2-72b", ["20", "30"]), ("llama3-70b", ["40"]),
                              ("mixtral-8x22b", ["10", "x"]))
    }  # fmt: skip
    study["grids"] = {k: study["grids"][k] for k in ("education", "professions", "mixture")}
    for name, size in (("education", 10), ("professions", 12), ("mixture", 9)):
        study["grids"][name]["config"]["population"]["size"] = size
    study["out_dir"] = str(tmp_path / "studies")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))  # grid order: cell order
    runner = CliRunner()
    ran = runner.invoke(app, ["study", str(path), "--quiet"])
    assert ran.exit_code == 0, ran.output
    folder = tmp_path / "studies" / "paper"
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    report = (folder / "report" / "report.md").read_text()
    assert "| 000-education | education_level | Ph.D. | 1 | 2 |" in report
    assert "| 001-professions | profession | athlete | 1 | 2 |" in report
    assert "## Mixtures: who won each round" in report
    import pyarrow.parquet as pq

    prompts = pq.read_table(folder / "cells" / "000-education" / "prompts").to_pylist()
    text = " ".join(str(p["messages"]) for p in prompts)
    assert "Your background: education level: " in text
    for level in ("Elementary School", "High School", "Ph.D."):
        assert f"2 with education level {level}" in text
