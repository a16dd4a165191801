"""Mixture win counts, means by attribute and by temperature, each checked against a
computation from the decisions and population Parquet files."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.store.run_dir import RunDirectory


def run_study(tmp: Path) -> Path:
    config = {
        "name": "mix",
        "seed": 5,
        "rounds": 2,
        "game": {"ratio": 0.5, "offset": 5},
        "population": {
            "size": 40,
            "attributes": {
                "model": {"dist": "categorical", "weights": {"a": 0.5, "b": 0.5}},
                "job": {"dist": "categorical", "weights": {"artist": 0.5, "economist": 0.5}},
            },
        },
        "models": {
            "a": {"backend": "scripted", "responses": ["10", "30", "nope"]},
            "b": {"backend": "scripted", "responses": ["20", "50", "12.5", "90"]},
        },
    }
    study = {
        "name": "mix",
        "config": config,
        "breakdowns": ["job"],
        "grid": {"temperature": [0.0, 1.0], "groups": [2]},
    }
    path = tmp / "mix.yaml"
    path.write_text(yaml.safe_dump(study))
    assert CliRunner().invoke(app, ["study", str(path), "--quiet"]).exit_code == 0
    folder = tmp / "studies" / "mix"
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def decisions(cell: Path) -> list[dict[str, Any]]:
    jobs = {p["agent_id"]: p["job"] for p in RunDirectory(cell).read_population().to_pylist()}
    rows = RunDirectory(cell).read_decisions().to_pylist()
    return [{**r, "job": jobs[r["agent_id"]]} for r in rows]


def test_breakdowns_match_the_decisions(tmp_path: Path) -> None:
    folder = run_study(tmp_path)
    out = folder / "report"
    wins = pq.read_table(out / "wins.parquet").to_pylist()
    attributes = pq.read_table(out / "attributes.parquet").to_pylist()
    temperatures = pq.read_table(out / "temperatures.parquet").to_pylist()
    cells = sorted((folder / "cells").iterdir())
    assert [c.name for c in cells] == ["000-t0", "001-t1"]
    for cell in cells:
        rows = decisions(cell)
        for step in (1, 2):
            for group in (0, 1):
                mine = [r for r in rows if (r["step"], r["group"]) == (step, group) and r["valid"]]
                target = 0.5 * statistics.fmean(r["value"] for r in mine) + 5
                best = min(abs(r["value"] - target) for r in mine)
                won = Counter(r["model"] for r in mine if abs(r["value"] - target) <= best + 1e-9)
                found = {
                    w["model"]: w["wins"]
                    for w in wins
                    if (w["cell"], w["round"], w["group"]) == (cell.name, step, group)
                }
                assert found == dict(won)
            for job in ("artist", "economist"):
                mine = [r for r in rows if r["step"] == step and r["job"] == job]
                (row,) = [
                    a for a in attributes
                    if (a["cell"], a["round"], a["value"]) == (cell.name, step, job)
                ]  # fmt: skip
                values = [r["value"] for r in mine if r["valid"]]
                assert (row["n"], row["valid"]) == (len(mine), len(values))
                assert row["mean"] == pytest.approx(statistics.fmean(values))
                assert row["std"] == pytest.approx(statistics.pstdev(values))
    for t in temperatures:
        cell = folder / "cells" / ("000-t0" if t["temperature"] == 0.0 else "001-t1")
        values = [r["value"] for r in decisions(cell) if r["step"] == t["round"] and r["valid"]]
        assert t["model"] == "a+b"
        assert t["mean"] == pytest.approx(statistics.fmean(values))
        assert t["std"] == pytest.approx(statistics.pstdev(values))
    report = (out / "report.md").read_text()
    for section in ("who won each round", "by population attribute", "By temperature"):
        assert section in report
    assert "a+b (scripted+scripted)" in report
    for png in ("attribute-000-t0-job.png", "attribute-001-t1-job.png", "temperature-a+b.png"):
        assert (out / png).stat().st_size > 5000, png
