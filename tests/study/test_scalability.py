"""The scalability study on surrogate agents: plain-asyncio references measured in the
study, ratios in the report recomputed from the cells' metrics and the reference files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.study.estimate import estimate
from megasim.study.spec import load_study

runner = CliRunner()


def test_scalability_ratios(tmp_path: Path) -> None:
    study = {
        "name": "scale",
        "asyncio_reference": True,
        "config": {
            "name": "scale",
            "rounds": 2,
            "population": {"size": 10},
            "models": {"dummy": {"backend": "surrogate", "latency_s": 0.05}},
        },
        "grid": {"agents": [200, 2000], "shards": [1, 2]},
    }
    path = tmp_path / "scale.yaml"
    path.write_text(yaml.safe_dump(study))
    result = runner.invoke(app, ["study", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "studies" / "scale"
    refs = sorted(p.name for p in (folder / "reference").iterdir())
    assert refs == ["asyncio-n200-l0.05.json", "asyncio-n2000-l0.05.json"]
    assert runner.invoke(app, ["report", str(folder)]).exit_code == 0
    rows = pq.read_table(folder / "report" / "scalability.parquet").to_pylist()
    assert [(r["agents"], r["shards"]) for r in rows] == [(200, 1), (200, 2), (2000, 1), (2000, 2)]
    for row in rows:
        metrics = (folder / "cells" / row["cell"] / "metrics.jsonl").read_text().splitlines()
        ours = statistics.fmean(json.loads(line)["wall_s"] for line in metrics)
        ref = json.loads(
            (folder / "reference" / f"asyncio-n{row['agents']}-l0.05.json").read_text()
        )
        plain = statistics.fmean(ref["wall_s"])
        assert plain >= 0.05  # it really waited
        assert row["s_per_round"] == pytest.approx(ours)
        assert row["ratio"] == pytest.approx(ours / plain)
    report = (folder / "report" / "report.md").read_text()
    assert "## Scalability" in report
    assert (folder / "report" / "scalability.png").stat().st_size > 5000
    assert "NOT LLM BEHAVIOUR" in report
    rows_est = estimate(load_study(path, write=False))
    assert all(e.seconds == pytest.approx(0.1) and e.calls == 0 for e in rows_est)
    again = runner.invoke(app, ["study", str(path), "--quiet"])  # references kept, not remeasured
    assert again.exit_code == 0
    assert sorted(p.name for p in (folder / "reference").iterdir()) == refs
