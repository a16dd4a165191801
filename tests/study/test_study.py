"""megasim study on scripted and surrogate models: grid, report numbers checked against
an independent computation, dry-run estimates, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.scenarios.guess_answers import EXTRACT_SEPARATOR, REPAIR_SEPARATOR
from megasim.store.run_dir import RunDirectory
from megasim.study.estimate import estimate
from megasim.study.spec import load_study

runner = CliRunner()
RESPONSES = ["10", "20", "abc", "40", '{"guess": 250}']


def write_study(tmp: Path, grid: dict[str, Any], model: dict[str, Any] | None = None,
                name: str = "s", size: int = 12) -> Path:  # fmt: skip
    base = {
        "name": "base",
        "seed": 3,
        "rounds": 2,
        "population": {"size": size, "groups": 1},
        "models": {"m": model or {"backend": "scripted", "responses": RESPONSES}},
    }
    (tmp / "base.yaml").write_text(yaml.safe_dump(base))
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": "base.yaml", "grid": grid}))
    return path


GRID = {
    "prompt": ["P1", "P2"],
    "rule": [{"ratio": 0.6667}, {"ratio": 0.5, "offset": 5}],
    "answer_mode": ["structured", "extract"],
    "memory": ["full"],
}


def test_grid_report_matches_an_independent_computation(tmp_path: Path) -> None:
    path = write_study(tmp_path, GRID)
    result = runner.invoke(app, ["study", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "studies" / "s"
    cells = sorted(p.name for p in (folder / "cells").iterdir())
    assert len(cells) == 8
    assert cells[0] == "000-P1-r0.6667-structured"
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    out = folder / "report"
    rows = pq.read_table(out / "cells.parquet").to_pylist()
    assert len(rows) == 8 * 2
    for row in rows:
        decisions = RunDirectory(folder / "cells" / row["cell"]).read_decisions()
        mine = [d for d in decisions.to_pylist() if d["step"] == row["round"]]
        values = [d["value"] for d in mine if d["valid"]]
        assert row["n"] == len(mine)
        assert row["valid"] == len(values)
        assert row["mean"] == pytest.approx(statistics.fmean(values))
        assert row["median"] == pytest.approx(statistics.median(values))
        assert row["std"] == pytest.approx(statistics.pstdev(values))
        assert (row["min"], row["max"]) == (min(values), max(values))
        ratio, offset = (0.6667, 0) if "r0.6667" in row["cell"] else (0.5, 5)
        assert row["winner"] == pytest.approx(ratio * statistics.fmean(values) + offset)
        assert row["tokens_out"] == sum(d["tokens_out"] for d in mine)
        assert row["latency_total_ms"] == pytest.approx(sum(d["latency_ms"] for d in mine))
        answers = [d["raw_text"] or "" for d in mine]
        sep = EXTRACT_SEPARATOR if row["answer_mode"] == "extract" else REPAIR_SEPARATOR
        assert row["calls"] == sum(1 + text.count(sep) for text in answers)
        assert row["prompt"] == row["cell"].split("-")[1]
        metrics = RunDirectory(folder / "cells" / row["cell"]).read_metrics()
        outcome = metrics[row["round"] - 1]["outcome"]
        assert math.isclose(outcome["winner"], row["winner"])  # the game agrees
    report = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,iVBOR") == 3  # every figure inlined
    assert "<script" not in page
    assert "http" not in page.split("Sources")[0]  # nothing fetched
    separators = sum(1 for line in report.splitlines() if line.startswith("|---|"))
    assert page.count("<table>") == separators > 3
    assert "<strong>NOT LLM BEHAVIOUR" in page
    assert "<td>19.52</td>" in page
    assert "NOT LLM BEHAVIOUR" in report
    assert "published: Qwen2-72B (vLLM)" in report
    assert "| 1 | 19.52 |" not in report  # ours first, then the published column
    for png in ("convergence-prompt-P1.png", "convergence-prompt-P2.png",
                "convergence-model-m.png"):  # fmt: skip
        assert (out / png).stat().st_size > 5000
    # extract answers cost more calls than structured on the same answers
    by_mode = {m: [r for r in rows if r["answer_mode"] == m] for m in ("structured", "extract")}
    calls = {m: sum(r["calls"] for r in rs) for m, rs in by_mode.items()}
    assert calls["extract"] > calls["structured"] >= sum(r["n"] for r in by_mode["structured"])


def test_dry_run_estimates_within_30_percent(tmp_path: Path) -> None:
    path = write_study(tmp_path, GRID)
    result = runner.invoke(app, ["study", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "8 cells" in result.output
    assert not (tmp_path / "studies" / "s" / "cells").exists()  # nothing ran
    before = {e.cell: e for e in estimate(load_study(path, write=False))}
    assert runner.invoke(app, ["study", str(path), "--quiet"]).exit_code == 0
    runner.invoke(app, ["report", str(tmp_path / "studies" / "s")])
    rows = pq.read_table(tmp_path / "studies" / "s" / "report" / "cells.parquet").to_pylist()
    for cell, e in before.items():
        mine = [r for r in rows if r["cell"] == cell]
        calls, tokens = sum(r["calls"] for r in mine), sum(r["tokens_out"] for r in mine)
        assert abs(e.calls - calls) <= 0.3 * calls, cell
        assert abs(e.tokens_out - tokens) <= 0.3 * tokens, cell
        assert e.decisions == sum(r["n"] for r in mine)
    after = estimate(load_study(path, write=False))
    assert all(e.state == "done" and e.seconds is not None for e in after)


def _events(folder: Path) -> dict[str, list[str]]:
    return {
        cell.name: [
            json.loads(line)["event"] for line in (cell / "events.jsonl").read_text().splitlines()
        ]
        for cell in sorted((folder / "cells").iterdir())
    }


def _decisions(folder: Path) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for cell in sorted((folder / "cells").iterdir()):
        rows = RunDirectory(cell).read_decisions().to_pylist()
        for row in rows:
            row.pop("latency_ms")
        found[cell.name] = sorted(rows, key=lambda r: (r["step"], r["agent_id"]))
    return found


def test_killed_study_continues_without_rerunning_finished_cells(tmp_path: Path) -> None:
    """SIGKILL the study while its second cell is mid-run (after round 1 of 3), rerun the
    same command: finished cells untouched, the killed one resumed, decisions equal to an
    unbroken study's. Surrogate with latency: slow enough to be caught mid-cell."""
    model = {"backend": "surrogate", "latency_s": 0.6}  # a round: long enough to catch
    grid = {"prompt": ["P1", "P3", "P2"], "rounds": [3]}
    killed = tmp_path / "killed"
    killed.mkdir()
    path = write_study(killed, grid, model, size=30)
    folder = killed / "studies" / "s"
    command = [sys.executable, "-m", "megasim", "study", str(path), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = folder / "cells" / "001-P3" / "checkpoints" / "step=1"
    deadline = time.monotonic() + 120
    while not target.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the second cell never reached round 1"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = folder / "cells" / "000-P1"
    assert _events(folder)["000-P1"][-1] == "done"
    assert "done" not in _events(folder)["001-P3"]
    finished_files = {p: p.stat().st_mtime_ns for p in first.rglob("*.parquet")}
    result = runner.invoke(app, ["study", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 cells run" not in result.output
    assert "1 already done" in result.output
    events = _events(folder)
    assert events["000-P1"].count("start") == 1
    assert "resumed" not in events["000-P1"]
    assert events["001-P3"].count("resumed") == 1
    assert events["001-P3"][-1] == "done"
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*.parquet")} == finished_files
    unbroken = tmp_path / "unbroken"
    unbroken.mkdir()
    path2 = write_study(unbroken, grid, model, size=30)
    assert runner.invoke(app, ["study", str(path2), "--quiet"]).exit_code == 0
    assert _decisions(folder) == _decisions(unbroken / "studies" / "s")
    reports = []
    for done in (folder, unbroken / "studies" / "s"):
        assert runner.invoke(app, ["report", str(done)]).exit_code == 0
        table = pq.read_table(done / "report" / "cells.parquet")
        reports.append(table.drop_columns([c for c in table.column_names if "latency" in c]))
    assert reports[0].equals(reports[1])  # the same final report
    again = runner.invoke(app, ["resume", str(folder)])  # nothing left: all skipped
    assert again.exit_code == 0, again.output
    assert "3 already done" in again.output


@pytest.mark.parametrize(
    ("study", "message"),
    [
        ({"name": "s", "base": "base.yaml", "grid": {"prompt": ["P9"]}}, "grid.prompt: unknown"),
        ({"name": "s", "base": "base.yaml", "grid": {"colour": [1]}}, "grid.colour"),
        ({"name": "s", "base": "base.yaml", "grid": {"agents": [0]}}, "population.size"),
        ({"name": "s", "base": "nope.yaml"}, "base: "),
        ({"name": "../x", "base": "base.yaml"}, "name"),
        ({"name": "s"}, "give exactly one of base"),
        (
            {"name": "s", "config": {"scenario": "chat_opinion", "population": {"size": 4}}},
            "a study runs the paper's guessing game",
        ),
    ],
)
def test_bad_study_exits_2_naming_the_field(
    tmp_path: Path, study: dict[str, Any], message: str
) -> None:
    write_study(tmp_path, {})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(study))
    result = runner.invoke(app, ["study", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert message in result.output
    assert str(path) in result.output
    assert "Traceback" not in result.output


def test_a_changed_grid_is_refused_for_the_same_folder(tmp_path: Path) -> None:
    path = write_study(tmp_path, {"prompt": ["P1"]})
    assert runner.invoke(app, ["study", str(path), "--quiet"]).exit_code == 0
    write_study(tmp_path, {"prompt": ["P1", "P2"]})
    result = runner.invoke(app, ["study", str(path), "--quiet"])
    assert result.exit_code == 2
    assert "holds another grid" in result.output


def test_one_driver_per_study_folder(tmp_path: Path) -> None:
    from megasim.store.run_lock import RunLock

    path = write_study(tmp_path, {"prompt": ["P1"]})
    folder = tmp_path / "studies" / "s"
    folder.mkdir(parents=True)
    with RunLock(folder):
        result = runner.invoke(app, ["study", str(path), "--quiet"])
    assert result.exit_code == 2
    assert "another driver" in result.output
    assert not (folder / "cells").exists()


def test_population_files_and_specs_as_a_dimension(tmp_path: Path) -> None:
    """A sampled file (its prompt column replaced per cell) and a spec file, each with two
    prompts: every agent of a cell uses the cell's prompt; the source file is untouched."""
    import pyarrow as pa

    people = pa.table({
        "agent_id": list(range(8)), "group": [0] * 8, "prompt_variant": ["P4"] * 8,
        "age": [20 + i for i in range(8)],
    })  # fmt: skip
    pq.write_table(people, tmp_path / "sampled.parquet")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"size": 5, "groups": 1}))
    path = write_study(tmp_path, {"population": ["sampled.parquet", "spec.yaml"],
                                  "prompt": ["P1", "P3"]})  # fmt: skip
    result = runner.invoke(app, ["study", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    cells = sorted((tmp_path / "studies" / "s" / "cells").iterdir())
    assert [c.name for c in cells] == ["000-P1-sampled", "001-P1-spec", "002-P3-sampled",
                                       "003-P3-spec"]  # fmt: skip
    for cell in cells:
        rows = RunDirectory(cell).read_decisions().to_pylist()
        assert len(rows) == (8 if "sampled" in cell.name else 5) * 2
        assert {r["prompt_variant"] for r in rows} == {cell.name.split("-")[1]}
        if "sampled" in cell.name:
            ages = RunDirectory(cell).read_population().column("age").to_pylist()
            assert ages == list(range(20, 28))  # the file's own people
    assert (
        pq.read_table(tmp_path / "sampled.parquet").column("prompt_variant").to_pylist()
        == ["P4"] * 8
    )
