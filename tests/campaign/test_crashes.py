"""Crash campaign (issue 10): SIGKILL the driver (``python -m megasim run``/``resume``) at
seeded random moments and inside checkpoint writes, then ``megasim resume`` until done:
no decision lost, none twice, and decisions identical to an unbroken run.

The model is the surrogate with 0.2 s latency, so a step lasts about 0.3 s and a random
moment falls at start-up, mid-step, between steps or while a checkpoint is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from megasim.config import load_config
from megasim.run import run_simulation
from megasim.store.run_dir import RunDirectory

pytestmark = pytest.mark.slow

ROUNDS = 12
AGENTS = 300
RANDOM_KILLS = 20
CHECKPOINT_KILLS = 4  # killed the moment a checkpoint's temporary folder appears
SEED = 20261130


def config(out: Path) -> dict[str, Any]:
    return {
        "name": "crash",
        "seed": 5,
        "rounds": ROUNDS,
        "population": {
            "size": AGENTS,
            "groups": 3,
            "attributes": {
                "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P4": 0.5}}
            },
        },
        "models": {"s": {"backend": "surrogate", "latency_s": 0.2}},
        "runtime": {"shards": 2},
        "out_dir": str(out),
    }


def decisions(run: Path) -> pa.Table:
    table = RunDirectory(run).read_decisions().drop_columns(["latency_ms", "shard"])
    return table.sort_by([("step", "ascending"), ("agent_id", "ascending")])


def driver(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "megasim", *args, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


BEFORE_START = "start-up (no run directory yet)"


def stderr(process: subprocess.Popen[bytes]) -> str:
    return process.stderr.read().decode(errors="replace") if process.stderr else ""


def phase(run: Path) -> str:
    """Where the kill landed, read from what it left behind."""
    if not (run / "config.yaml").is_file():
        return BEFORE_START
    ckpt = run / "checkpoints"
    if ckpt.is_dir() and any(ckpt.glob(".step=*.tmp")):
        return "inside a checkpoint write"
    done = max((int(p.name[5:]) for p in ckpt.glob("step=*")), default=0) if ckpt.is_dir() else 0
    steps = run / "steps"
    ahead = [p for p in steps.glob("step=*") if int(p.name[5:]) > done] if steps.is_dir() else []
    if ahead:
        return "mid-step (decisions written, step not checkpointed)"
    # shards write a step's decisions at its end: earlier in a step looks the same
    return "start-up, or mid-step before the shards wrote (nothing past the checkpoint)"


def kill_at(process: subprocess.Popen[bytes], delay: float) -> bool:
    """SIGKILL after ``delay`` s unless it ended first; True if it was killed."""
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
    return False


def kill_in_checkpoint(process: subprocess.Popen[bytes], run: Path, skip: int) -> bool:
    """SIGKILL the moment the ``skip``-th checkpoint temporary folder is seen."""
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        tmp = {p.name for p in (run / "checkpoints").glob(".step=*.tmp")}
        if tmp - seen:
            seen |= tmp
            if len(seen) > skip:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
        time.sleep(0.0005)
    process.wait()
    return False


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(config(tmp_path / "runs")))
    unbroken = asyncio.run(run_simulation(load_config(cfg_path), run_id="unbroken"))
    expected = decisions(unbroken.run_dir.path)
    assert expected.num_rows == AGENTS * ROUNDS

    rng = random.Random(SEED)
    phases: Counter[str] = Counter()
    kills = resumes = chains = 0
    plan = ["checkpoint"] * CHECKPOINT_KILLS + ["random"] * RANDOM_KILLS
    rng.shuffle(plan)
    started = time.monotonic()
    log: list[str] = []  # what happened, for failure messages
    while plan or chains == 0:
        chains += 1
        run = tmp_path / "runs" / f"chain{chains}"
        fresh = True
        while True:
            args = ["run", str(cfg_path), "--run-id", run.name, "--no-preflight"]
            if not fresh:
                args = ["resume", str(run)]
                resumes += 1
            process = driver(args)
            kind = plan.pop() if plan else None
            if kind == "random":  # start-up is ~1.8 s, then ~0.3 s a step
                killed = kill_at(process, rng.uniform(0.5, 4.5))
            elif kind == "checkpoint":
                killed = kill_in_checkpoint(process, run, skip=rng.randrange(3))
            else:
                killed = False
                assert process.wait(timeout=60) == 0, (stderr(process), log)
            if not killed:
                assert process.returncode == 0, (stderr(process), log)
                if kind is not None:
                    plan.append(kind)  # it finished first: that kill is still owed
                break
            kills += 1
            where = phase(run)
            log.append(f"{args[0]} killed ({kind}): {where}")
            phases[f"{kind}: {where}"] += 1
            if where == BEFORE_START:
                # killed before the run directory held its config: nothing to resume;
                # the folder (empty or absent) is removed and the run started again
                if run.exists():
                    for path in sorted(run.rglob("*"), reverse=True):
                        path.rmdir() if path.is_dir() else path.unlink()
                    run.rmdir()
                continue
            fresh = False
        got = decisions(run)
        keys = pc.binary_join_element_wise(
            pc.cast(got["step"], pa.string()), pc.cast(got["agent_id"], pa.string()), ":"
        )
        assert pc.count_distinct(keys).as_py() == got.num_rows, "a decision counted twice"
        assert got.num_rows == AGENTS * ROUNDS, "a decision lost"
        assert got.equals(expected), f"chain {chains}: decisions differ from the unbroken run"
        metrics = RunDirectory(run).read_metrics()
        assert [m["step"] for m in metrics] == list(range(1, ROUNDS + 1))
        events = [json.loads(line)["event"] for line in (run / "events.jsonl").open()]
        assert events[-1] == "done"
    elapsed = time.monotonic() - started
    print(
        f"\ncrash campaign: {kills} kills, {resumes} resumes, {chains} runs in {elapsed:.0f} s;",
        dict(sorted(phases.items())),
    )
    assert kills >= RANDOM_KILLS + CHECKPOINT_KILLS
    assert any("checkpoint write" in p for p in phases), phases
    assert any("mid-step" in p for p in phases), phases


# --- write-ahead log: answers received before a kill are replayed, not re-asked --------

WAL_AGENTS, WAL_ROUNDS, WAL_KILL_STEP = 40, 3, 2


def wal_config(out: Path, base_url: str) -> dict[str, Any]:
    """An LLM-backed run (the fake OpenAI server), one call per decision (merge off)."""
    return {
        "name": "wal",
        "seed": 3,
        "rounds": WAL_ROUNDS,
        "population": {
            "size": WAL_AGENTS,
            "groups": 2,
            "attributes": {
                "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P3": 0.5}}
            },
        },
        "models": {
            "srv": {
                "backend": "openai",
                "base_url": base_url,
                "model": "fake-model",
                "api_key_env": None,
                "merge": False,
                "max_concurrency": 4,
            }
        },
        "runtime": {"shards": 2},
        "out_dir": str(out),
    }


def wal_lines(run: Path, step: int) -> list[dict[str, Any]]:
    folder = run / "wal" / f"step={step}"
    lines = [ln for p in sorted(folder.glob("*.jsonl")) for ln in p.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.endswith("}")]


def kill_when_logged(process: subprocess.Popen[bytes], run: Path, step: int, at: int) -> None:
    """SIGKILL once ``at`` answers of ``step`` are in its write-ahead log (mid-step)."""
    path = run / "wal" / f"step={step}" / "local.jsonl"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if path.is_file() and path.read_bytes().count(b"\n") >= at:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    process.wait()


def test_sigkill_mid_step_replays_logged_answers(tmp_path: Path) -> None:
    """Killed mid-step 2 of an LLM run: ``megasim resume --shards 3`` asks the server only
    for the calls not yet logged; every logged answer is the decision recorded; nothing
    lost or twice; decisions equal an unbroken run's."""
    from megasim.model.fake_server import FakeServer

    with FakeServer(latency_s=0.05, slots=4) as server:
        cfg_path = tmp_path / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump(wal_config(tmp_path / "runs", server.base_url)))
        unbroken = asyncio.run(run_simulation(load_config(cfg_path), run_id="unbroken"))
        expected = decisions(unbroken.run_dir.path).drop_columns(["tokens_in", "tokens_out"])
        assert server.requests == WAL_AGENTS * WAL_ROUNDS
        assert not (unbroken.run_dir.path / "wal").exists(), "logs of checkpointed steps stay"

        run = tmp_path / "runs" / "killed"
        server.reset_counts()
        process = driver(["run", str(cfg_path), "--run-id", run.name, "--no-preflight"])
        kill_when_logged(process, run, WAL_KILL_STEP, at=WAL_AGENTS // 4)
        assert process.returncode == -signal.SIGKILL, stderr(process)
        logged = wal_lines(run, WAL_KILL_STEP)
        asked_before = server.requests
        assert 0 < len(logged) < WAL_AGENTS, "the kill must land mid-step"
        assert not (run / "steps" / f"step={WAL_KILL_STEP}").exists()

        server.reset_counts()
        resumed = driver(["resume", str(run), "--shards", "3"])
        assert resumed.wait(timeout=120) == 0, stderr(resumed)
        left = WAL_AGENTS * (WAL_ROUNDS - WAL_KILL_STEP + 1) - len(logged)
        assert server.requests == left, (asked_before, len(logged), server.requests)
        assert not (run / "wal").exists() or not any((run / "wal").iterdir())

    got = decisions(run)
    assert got.num_rows == WAL_AGENTS * WAL_ROUNDS, "a decision lost or doubled"
    rows = {
        (r["step"], r["agent_id"]): r["raw_text"]
        for r in got.select(["step", "agent_id", "raw_text"]).to_pylist()
    }
    for line in logged:  # every answer received before the kill is the decision kept
        assert rows[(WAL_KILL_STEP, line["agent_id"])] == line["text"]
    assert got.drop_columns(["tokens_in", "tokens_out"]).equals(expected)
    print(
        f"\nwrite-ahead log: {len(logged)} of {WAL_AGENTS} answers of step {WAL_KILL_STEP} "
        f"logged before the kill, replayed; the resume asked {left} calls "
        f"(without the log: {left + len(logged)})"
    )
