"""docs/gpu.md's study, as far as this machine can test it: the example files load and
dry-run; the same study with its two vLLM endpoints replaced by two OpenAI-compatible
fake servers (and the local runtime instead of the Ray cluster) runs end to end, with
calls spread over both endpoints."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.model.fake_server import FakeServer
from megasim.store.run_dir import RunDirectory
from megasim.study.spec import load_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "studies"


def test_gpu_study_files_load() -> None:
    study = load_study(EXAMPLES / "gpu.yaml", write=False)
    assert len(study.cells) == 4
    config = study.cells[0].config
    assert config.runtime.kind == "ray"
    assert config.runtime.shard_resources == {0: {"node_a": 0.01}, 1: {"node_b": 0.01}}
    endpoints = config.models["qwen"].endpoints  # type: ignore[union-attr]
    assert [e.node for e in endpoints or []] == ["node_a", "node_b"]


def test_gpu_study_against_two_fake_servers(tmp_path: Path) -> None:
    base = yaml.safe_load((EXAMPLES / "gpu-base.yaml").read_text())
    study = yaml.safe_load((EXAMPLES / "gpu.yaml").read_text())
    with FakeServer(model="fake-model") as one, FakeServer(model="fake-model") as two:
        base["models"]["qwen"] |= {"model": "fake-model", "api_key_env": None}
        for endpoint, server in zip(base["models"]["qwen"]["endpoints"], (one, two), strict=True):
            endpoint["base_url"] = server.base_url
        base["runtime"] = {"kind": "local"}
        base["population"]["size"] = 20
        base["rounds"] = 2
        (tmp_path / "gpu-base.yaml").write_text(yaml.safe_dump(base))
        study["out_dir"] = str(tmp_path / "studies")
        (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(study))
        result = CliRunner().invoke(app, ["study", str(tmp_path / "gpu.yaml"), "--quiet"])
        assert result.exit_code == 0, result.output
        calls = [sum(s.stats()["counts"].values()) for s in (one, two)]
    assert min(calls) > 0  # both endpoints served
    folder = tmp_path / "studies" / "gpu"
    for cell in sorted((folder / "cells").iterdir()):
        rows = RunDirectory(cell).read_decisions().to_pylist()
        assert len(rows) == 40
        assert not [r["error"] for r in rows if r["error"] and r["error"].startswith("model")]
    report = CliRunner().invoke(app, ["report", str(folder)])
    assert report.exit_code == 0, report.output
    assert (folder / "report" / "report.html").is_file()
