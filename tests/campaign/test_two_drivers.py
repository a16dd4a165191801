"""Two drivers (issue 10): while ``megasim run`` writes a run directory, a second driver on
it (``megasim resume``, or ``megasim run`` with the same id) is refused with exit 2 naming
the holder, and the first run ends complete and untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import megasim.cli as cli
from megasim.store.run_dir import RunDirectory
from tests.campaign.fuzz import clean_exit
from tests.campaign.test_crashes import AGENTS, config

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_a_second_driver_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    data = config(tmp_path / "runs") | {"rounds": 6}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data))
    run = tmp_path / "runs" / "live"
    first = subprocess.Popen(
        [sys.executable, "-m", "megasim", "run", str(cfg), "--run-id", "live", "--quiet"],
        stderr=subprocess.PIPE,
        env={**os.environ, "MEGASIM_ORIGIN": "campaign"},
    )
    deadline = time.monotonic() + 30
    while not (run / "steps" / "step=1").exists():  # a step done: the driver is mid-run
        assert first.poll() is None, "the first run ended"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    refusals = [
        runner.invoke(cli.app, ["resume", str(run), "--quiet"]),
        runner.invoke(cli.app, ["resume", str(run), "--shards", "3", "--quiet"]),
        runner.invoke(cli.app, ["run", str(cfg), "--run-id", "live", "--quiet"]),
    ]
    still_running = first.poll() is None
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    assert still_running, "the refusals must happen while the first driver writes"
    for result in refusals[:2]:
        clean_exit(result, allowed=(2,))
        assert f"pid {first.pid}" in result.output, result.output
        assert "another driver is writing this run" in result.output
    clean_exit(refusals[2], allowed=(2,))
    assert "already exists" in refusals[2].output
    decisions = RunDirectory(run).read_decisions()
    assert decisions.num_rows == AGENTS * 6
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").open()]
    assert events[0] == "start"
    assert events[-1] == "done"
    assert "resumed" not in events
    assert "failed" not in events
