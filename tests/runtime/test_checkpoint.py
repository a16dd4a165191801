"""Checkpoints and resume: a crashed run continues to the same results as an unbroken one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from megasim.config import SimulationConfig
from megasim.run import resume_simulation, run_simulation
from megasim.runtime.checkpoint import CheckpointStore, read_agent_states, write_agent_states
from megasim.simulation import StepOutcome
from megasim.store.run_dir import RunDirectory


def config_data(out: Path, rounds: int = 4, latency: float = 0.0) -> dict[str, Any]:
    return {
        "seed": 11,
        "rounds": rounds,
        "population": {
            "size": 400,
            "groups": 2,
            "attributes": {
                "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P4": 0.5}}
            },
        },
        "models": {"s": {"backend": "surrogate", "latency_s": latency}},
        "out_dir": str(out),
    }


def decisions(run: RunDirectory) -> pa.Table:
    table = run.read_decisions().drop_columns(["latency_ms"])
    return table.sort_by([("step", "ascending"), ("agent_id", "ascending")])


def test_agent_states_round_trip(tmp_path: Path) -> None:
    write_agent_states(tmp_path / "shard=0.jsonl", [(1, {"a": [1, 2]}), (5, {})])
    write_agent_states(tmp_path / "shard=1.jsonl", [(9, {"b": "x"})])
    assert read_agent_states(tmp_path) == {1: {"a": [1, 2]}, 5: {}, 9: {"b": "x"}}


def test_commit_is_atomic_and_pruned(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for step in (1, 2, 3):
        tmp = store.begin(step)
        assert store.latest() == (
            None if step == 1 else (step - 1, store.root / f"step={step - 1}")
        )
        store.commit(step, tmp, {"step": step})
    assert store.steps() == [2, 3]  # the last two are kept
    store.begin(4)  # an unfinished checkpoint is invisible
    assert store.latest() == (3, store.root / "step=3")
    assert store.load_driver(store.root / "step=3") == {"step": 3}


async def test_resume_after_a_crash_between_steps(tmp_path: Path) -> None:
    unbroken = await run_simulation(
        SimulationConfig.model_validate(config_data(tmp_path)), run_id="a"
    )

    def crash_after_two(outcome: StepOutcome) -> None:
        if outcome.step == 2:
            raise KeyboardInterrupt  # the driver dies after step 2's checkpoint

    cfg = SimulationConfig.model_validate(config_data(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        await run_simulation(cfg, on_step=crash_after_two, run_id="b")
    run_b = tmp_path / "b"
    # a half-written step 3 from the crashed driver must be discarded, not counted
    (run_b / "steps" / "step=3").mkdir()
    (run_b / "steps" / "step=3" / "shard=0.parquet").write_bytes(b"partial")
    resumed = await resume_simulation(run_b)
    assert [s.step for s in resumed.steps] == [1, 2, 3, 4]
    assert decisions(resumed.run_dir).equals(decisions(unbroken.run_dir))
    assert [s.outcome for s in resumed.steps] == [s.outcome for s in unbroken.steps]
    assert [m["step"] for m in resumed.run_dir.read_metrics()] == [1, 2, 3, 4]
    events = [json.loads(x)["event"] for x in resumed.run_dir.events_path.read_text().splitlines()]
    assert events == ["start", "failed", "resumed", "done"]


async def test_resume_of_a_finished_run_does_nothing(tmp_path: Path) -> None:
    done = await run_simulation(
        SimulationConfig.model_validate(config_data(tmp_path, 2)), run_id="d"
    )
    again = await resume_simulation(done.run_dir.path)
    assert [s.step for s in again.steps] == [1, 2]
    assert decisions(again.run_dir).equals(decisions(done.run_dir))


def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def kill_driver_then_resume(tmp_path: Path, data: dict[str, Any], extra: list[str]) -> None:
    """Start `megasim run` in a subprocess, SIGKILL it after step 2, `megasim resume`,
    and compare with an unbroken run of the same config."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data))
    megasim = [sys.executable, "-m", "megasim"]
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen(
        [*megasim, "run", str(cfg), "--run-id", "killed", "--quiet", *extra], env=env
    )
    run = tmp_path / "runs" / "killed"
    try:
        checkpoint = run / "checkpoints" / "step=2" / "driver.json"
        wait_for(lambda: checkpoint.exists() or proc.poll() is not None, 120)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "checkpoints" / "step=4").exists(), "killed too late to test anything"
    resumed = subprocess.run([*megasim, "resume", str(run), "--quiet"], env=env, check=False)
    assert resumed.returncode == 0
    unbroken = subprocess.run(
        [*megasim, "run", str(cfg), "--run-id", "unbroken", "--quiet", *extra], env=env
    )
    assert unbroken.returncode == 0
    assert decisions(RunDirectory(run)).equals(
        decisions(RunDirectory(tmp_path / "runs" / "unbroken"))
    )


@pytest.mark.slow
def test_kill_driver_then_resume_local(tmp_path: Path) -> None:
    kill_driver_then_resume(tmp_path, config_data(tmp_path / "runs", latency=0.4), [])
