"""Runs and a real studio server (uvicorn on 127.0.0.1) for the studio's tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from megasim.config import load_config
from megasim.run import run_simulation
from megasim.studio.server import StudioThread


def game_config(
    name: str, size: int, rounds: int, latency_s: float = 0.0, **extra: Any
) -> dict[str, Any]:
    """A surrogate game with personas (age, education) and two models."""
    config: dict[str, Any] = {
        "name": name,
        "seed": 11,
        "rounds": rounds,
        "population": {
            "size": size,
            "groups": 3,
            "attributes": {
                "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P3": 0.5}},
                "age": {"dist": "uniform", "min": 18, "max": 80},
                "education": {
                    "dist": "categorical",
                    "weights": {"high school": 0.5, "bachelor": 0.3, "PhD": 0.2},
                },
                "model": {"dist": "categorical", "weights": {"quick": 0.5, "steady": 0.5}},
            },
        },
        "models": {
            "quick": {"backend": "surrogate", "latency_s": latency_s},
            "steady": {"backend": "surrogate", "latency_s": latency_s},
        },
        "out_dir": ".",
    }
    config.update(extra)
    return config


def make_run(runs: Path, run_id: str, size: int = 3000, rounds: int = 3) -> Path:
    source = runs / f"{run_id}.yaml"
    source.write_text(yaml.safe_dump(game_config(run_id, size, rounds)))
    config = load_config(source, {"out": str(runs)})
    # Own thread: Playwright's sync API keeps an event loop running in the test thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run_simulation(config, run_id=run_id)).result()
    source.unlink()
    return runs / run_id


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one finished 3,000-agent, 3-round surrogate run named ``done1``."""
    runs = tmp_path_factory.mktemp("runs")
    make_run(runs, "done1")
    return runs


def private_copy(runs: Path, tmp_path: Path) -> Path:
    """A copy of a runs folder: what one test asks, renders or deletes stays its own."""
    target = tmp_path / "runs"
    shutil.copytree(runs, target)
    return target


@pytest.fixture
def runs_copy(finished_runs: Path, tmp_path: Path) -> Path:
    return private_copy(finished_runs, tmp_path)


class StudioServer(StudioThread):
    """A real uvicorn server in a thread (live channel every 0.5 s); ``url``: its address."""

    def __init__(self, runs: Path, token: str | None = None) -> None:
        super().__init__(runs, token, live_interval_s=0.5)


@pytest.fixture
def studio_server(runs_copy: Path) -> Iterator[StudioServer]:
    with StudioServer(runs_copy) as server:
        yield server


def start_live_run(
    runs: Path, run_id: str, size: int = 2000, rounds: int = 40, latency_s: float = 0.25
) -> subprocess.Popen[bytes]:
    """``megasim run`` in its own process (as a user would), slow enough to watch."""
    source = runs / f"{run_id}.yaml"
    source.write_text(yaml.safe_dump(game_config(run_id, size, rounds, latency_s)))
    command = [
        sys.executable,
        "-m",
        "megasim",
        "run",
        str(source),
        "--run-id",
        run_id,
        "--out",
        str(runs),
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (runs / run_id / "status.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"live run did not start: {output}")
        time.sleep(0.1)
    return process


@pytest.fixture
def live_run(runs_copy: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    process = start_live_run(runs_copy, "live1")
    try:
        yield runs_copy / "live1", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
