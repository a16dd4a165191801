"""Simulation handle: plain async scenario code, metrics per step, listeners."""

from __future__ import annotations

import json
from pathlib import Path

from megasim.config import SimulationConfig
from megasim.run import run_simulation
from megasim.simulation import StepOutcome


def config(tmp_path: Path) -> SimulationConfig:
    return SimulationConfig.model_validate(
        {
            "seed": 1,
            "rounds": 3,
            "game": {"ratio": 0.5, "offset": 5},
            "population": {"size": 300, "groups": 2},
            "models": {
                "a": {"backend": "surrogate"},
                "b": {"backend": "scripted", "responses": ["40", "oops"]},
            },
            "default_model": "a",
            "out_dir": str(tmp_path),
        }
    )


async def test_run_records_metrics_events_and_outcomes(tmp_path: Path) -> None:
    seen: list[StepOutcome] = []
    result = await run_simulation(config(tmp_path), on_step=seen.append, run_id="r")
    assert [s.step for s in seen] == [1, 2, 3]
    run = result.run_dir
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2, 3]
    first = metrics[0]
    assert first["agents"] == first["decisions"] == 300
    assert first["tasks"] == 0  # surrogate without latency: no asyncio task per agent
    assert set(first["models"]) == {"a"}
    outcome = first["outcome"]
    assert outcome["winner"] == 0.5 * outcome["mean"] + 5
    assert len(outcome["groups"]) == 2
    events = [json.loads(line)["event"] for line in run.events_path.read_text().splitlines()]
    assert events == ["start", "done"]
    decisions = run.read_decisions(2).to_pylist()
    assert len(decisions) == 300
    # the winner of round 1 is what every agent was told in round 2
    assert result.steps[0].outcome["winner"] is not None


async def test_invalid_answers_do_not_move_the_winner(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.default_model = "b"
    result = await run_simulation(cfg, run_id="scripted")
    outcome = result.steps[0].outcome
    assert outcome["valid"] == 150
    assert outcome["invalid"] == 150
    assert outcome["mean"] == 40.0
    assert outcome["winner"] == 25.0
