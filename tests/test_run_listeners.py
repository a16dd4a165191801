"""Listeners of a real run: background ones finish before the run ends, also when it is
stopped, and a failing one is recorded in events.jsonl without failing the run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from megasim.config import SimulationConfig
from megasim.env.base import Environment
from megasim.run import run_simulation
from megasim.scenarios.guess_two_thirds import GuessTwoThirds

HEARD: list[int] = []


class ListenedGame(GuessTwoThirds):
    """The guessing game with a slow listener and a broken one on its environment."""

    def build_env(self, config: SimulationConfig, population: pa.Table) -> Any:
        env: Environment = super().build_env(config, population)

        async def slow(event: str, payload: Mapping[str, Any]) -> None:
            await asyncio.sleep(0.3)
            HEARD.append(int(payload["step"]))

        async def broken(event: str, payload: Mapping[str, Any]) -> None:
            raise RuntimeError(f"listener bug at step {payload['step']}")

        env.on("step_end", slow)
        env.on("step_end", broken)
        return env


def test_background_listeners_finish_and_failures_are_recorded(tmp_path: Path) -> None:
    HEARD.clear()
    data = {
        "scenario": "tests.test_run_listeners:ListenedGame",
        "rounds": 3,
        "population": {"size": 20},
        "models": {"s": {"backend": "surrogate"}},
        "out_dir": str(tmp_path),
    }
    result = asyncio.run(run_simulation(SimulationConfig.model_validate(data), run_id="l"))
    assert sorted(HEARD) == [1, 2, 3]  # the last step's slow listener was not cut off
    events = [json.loads(line) for line in result.run_dir.events_path.read_text().splitlines()]
    failed = [e["reason"] for e in events if e["event"] == "listener_failed"]
    assert failed == [f"RuntimeError: listener bug at step {n}" for n in (1, 2, 3)]
    assert events[-1]["event"] == "done"
