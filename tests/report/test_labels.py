"""Reports name every model's backend and label non-LLM stand-ins wherever results show."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from matplotlib.figure import Figure
from rich.console import Console
from tests.report.test_report import make_run
from typer.testing import CliRunner

from megasim.cli import app
from megasim.report import render_report
from megasim.report.models import load_models, stand_in_warning
from megasim.report.plots import _label_models

MIXED = {
    "model-a": {"backend": "surrogate", "latency_s": 0},
    "model-b": {"backend": "local", "parallel": 4},
    "unused": {"backend": "scripted"},
}


def run_with_models(root: Path, models: dict[str, Any]) -> Path:
    make_run(root)  # decisions of model-a and model-b
    config = {"seed": 1, "rounds": 3, "models": models}
    (root / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def test_models_read_from_config_with_what_they_are(tmp_path: Path) -> None:
    models = load_models(run_with_models(tmp_path / "r", MIXED), used=["model-a", "gone"])
    assert models["model-a"].label == "model-a (surrogate: non-LLM stand-in)"
    assert models["model-b"].label == "model-b (local: LLM)"
    assert models["unused"].stand_in  # scripted is a stand-in too
    assert models["gone"].backend == "unknown"  # used but not configured: never "LLM"
    assert models["gone"].kind == "unknown"
    assert stand_in_warning([models["model-b"]]) is None


def test_terminal_report_and_summary_label_the_stand_in(tmp_path: Path) -> None:
    root = run_with_models(tmp_path / "r", MIXED)
    console = Console(record=True, width=200)
    render_report(root, console)
    text = console.export_text()
    first_line = text.splitlines()[0]
    assert first_line.startswith("NOT LLM BEHAVIOUR: answers of model-a (surrogate)")
    assert "model-a (surrogate: non-LLM stand-in)" in text  # by-model table rows
    assert "model-b (local: LLM)" in text
    assert "bundled SmolLM2-135M-Instruct" in text  # the Models table
    assert "unused" not in text  # only models whose answers are shown
    summary = json.loads((root / "report" / "summary.json").read_text())
    assert summary["models"]["model-a"] == {
        "backend": "surrogate",
        "kind": "non-LLM stand-in",
        "llm": False,
        "stand_in": True,
        "detail": "seeded level-k answers",
    }
    assert summary["models"]["model-b"]["llm"] is True
    assert summary["stand_in_models"] == ["model-a"]
    assert summary["warning"].startswith("NOT LLM BEHAVIOUR")
    backends = {r["key"]: r["backend"] for r in summary["breakdowns"]["model"]}
    assert backends == {"model-a": "surrogate", "model-b": "local"}


def test_llm_only_report_has_no_warning(tmp_path: Path) -> None:
    llms = {
        "model-a": {"backend": "openai", "model": "Qwen2.5-7B", "base_url": "http://h:1/v1"},
        "model-b": {"backend": "local"},
    }
    root = run_with_models(tmp_path / "r", llms)
    console = Console(record=True, width=200)
    render_report(root, console)
    text = console.export_text()
    assert "NOT LLM" not in text
    assert "OpenAI-compatible: Qwen2.5-7B" in text
    summary = json.loads((root / "report" / "summary.json").read_text())
    assert summary["warning"] is None
    assert summary["stand_in_models"] == []


def test_plots_carry_backends_and_the_warning(tmp_path: Path) -> None:
    models = load_models(run_with_models(tmp_path / "r", MIXED), used=["model-a", "model-b"])
    fig = Figure()
    _label_models(fig, {k: models[k] for k in ("model-a", "model-b")})
    texts = [fig.get_supxlabel()]
    assert any("model-a (surrogate: non-LLM stand-in)" in t for t in texts)
    assert any("model-b (local: LLM)" in t for t in texts)
    suptitle = fig.get_suptitle()
    assert suptitle.startswith("NOT LLM BEHAVIOUR")
    llm_only = Figure()
    _label_models(llm_only, {"model-b": models["model-b"]})
    assert llm_only.get_suptitle() == ""


@pytest.mark.parametrize("backend", ["surrogate", "scripted"])
def test_cli_run_and_report_label_stand_ins(
    write_config: Callable[..., Path], tmp_path: Path, backend: str
) -> None:
    cfg = write_config(models={"stub": {"backend": backend}})
    runner = CliRunner()
    ran = runner.invoke(app, ["run", str(cfg), "--run-id", "r", "--quiet"])
    assert ran.exit_code == 0, ran.output
    assert f"model stub: backend {backend} (non-LLM stand-in: not LLM behaviour)" in ran.output
    reported = runner.invoke(app, ["report", str(tmp_path / "runs" / "r")])
    assert reported.exit_code == 0, reported.output
    assert f"NOT LLM BEHAVIOUR: answers of stub ({backend})" in reported.output
