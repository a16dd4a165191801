"""Run ids and run directories from the CLI: bad ids and reuse exit 2 with a clear message,
a second driver on a run directory is refused, and a SIGKILLed driver leaves no lock that
blocks `megasim resume`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from megasim.cli import app
from megasim.store.run_dir import RunDirectory
from megasim.store.run_lock import LOCK_FILE
from tests.runtime.test_checkpoint import wait_for

runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("run_id", ["../escape", "/tmp/megasim-abs", "a/b", ".."])
def test_bad_run_id_exits_2_and_creates_nothing(
    write_config: Callable[..., Path], tmp_path: Path, run_id: str
) -> None:
    cfg = write_config()
    code, output = run_cli("run", str(cfg), "--run-id", run_id, "--quiet")
    assert code == 2, output
    assert "--run-id" in output
    assert "not a valid run id" in output
    assert "Traceback" not in output
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "escape").exists()
    assert not Path("/tmp/megasim-abs").exists()


def test_bad_name_in_config_exits_2_naming_file_and_field(
    write_config: Callable[..., Path],
) -> None:
    cfg = write_config()
    cfg.write_text(cfg.read_text().replace("name: t\n", "name: ../../etc\n"))
    code, output = run_cli("run", str(cfg), "--quiet")
    assert code == 2, output
    assert f"{cfg}: name:" in output
    assert "cannot start a run id" in output


def test_reused_run_id_exits_2_and_leaves_the_run_alone(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config()
    assert run_cli("run", str(cfg), "--run-id", "once", "--quiet")[0] == 0
    run = tmp_path / "runs" / "once"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    code, output = run_cli("run", str(cfg), "--run-id", "once", "--quiet")
    assert code == 2, output
    assert "already exists" in output
    assert f"megasim resume {run}" in output
    assert "Traceback" not in output
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_second_driver_refused_then_resume_after_sigkill(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    rounds, agents = 12, 50
    cfg = write_config(
        rounds=rounds,
        population={"size": agents, "groups": 2},
        models={"s": {"backend": "surrogate", "latency_s": 0.3}},  # a step: ~0.3 s
    )
    run = tmp_path / "runs" / "held"
    env = {**os.environ, "COLUMNS": "120"}
    command = [sys.executable, "-m", "megasim", "run", str(cfg), "--run-id", "held", "--quiet"]
    driver = subprocess.Popen(command, env=env)
    try:
        wait_for(lambda: (run / "checkpoints" / "step=1").is_dir(), 60)
        holder = json.loads((run / LOCK_FILE).read_text())
        assert holder["pid"] == driver.pid
        code, output = run_cli("resume", str(run), "--quiet")  # a second driver
        assert code == 2, output
        assert f"another driver is writing this run (pid {driver.pid} on" in output
        assert driver.poll() is None, "the run ended before it could be killed"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert not (run / "checkpoints" / f"step={rounds}").exists()
    code, output = run_cli("resume", str(run), "--quiet")  # the lock died with its driver
    assert code == 0, output
    finished = RunDirectory(run)
    assert [m["step"] for m in finished.read_metrics()] == list(range(1, rounds + 1))
    assert finished.read_decisions().num_rows == rounds * agents
