"""`megasim resume`: progress continues where the run stopped, and the runtime can change."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from rich.progress import Progress
from typer.testing import CliRunner

import megasim.cli as cli
from megasim.config import SimulationConfig
from megasim.run import run_simulation
from megasim.simulation import StepOutcome
from megasim.store.run_dir import RunDirectory
from tests.runtime.test_checkpoint import config_data, decisions

runner = CliRunner()
AGENTS = 400  # config_data's population


def crashed_run(tmp_path: Path, run_id: str, after: int = 2, **runtime: Any) -> Path:
    """A 4-round run whose driver dies after step ``after`` (its checkpoint is complete)."""

    def crash(outcome: StepOutcome) -> None:
        if outcome.step == after:
            raise KeyboardInterrupt

    data = config_data(tmp_path)
    if runtime:
        data["runtime"] = runtime
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(
            run_simulation(SimulationConfig.model_validate(data), on_step=crash, run_id=run_id)
        )
    return tmp_path / run_id


def test_resume_progress_starts_after_the_checkpointed_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    class Recording(Progress):
        def add_task(self, *args: Any, **fields: Any) -> Any:
            seen.append(fields)
            return super().add_task(*args, **fields)

        def update(self, task: Any, **fields: Any) -> None:
            seen.append(fields)
            super().update(task, **fields)

    monkeypatch.setattr(cli, "Progress", Recording)
    run = crashed_run(tmp_path, "half")
    result = runner.invoke(cli.app, ["resume", str(run)])
    assert result.exit_code == 0, result.output
    assert seen[0]["total"] == 4 * AGENTS
    assert seen[0]["completed"] == 2 * AGENTS  # not 0
    assert seen[0]["round"] == 3  # not 1
    rounds = [f["round"] for f in seen if "round" in f]
    assert min(rounds) == 3
    assert max(f["completed"] for f in seen if "completed" in f) == 4 * AGENTS


def test_resume_on_more_shards_gives_the_same_decisions(tmp_path: Path) -> None:
    unbroken = asyncio.run(
        run_simulation(SimulationConfig.model_validate(config_data(tmp_path)), run_id="whole")
    )
    run = crashed_run(tmp_path, "moved")
    result = runner.invoke(cli.app, ["resume", str(run), "--shards", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (
        decisions(unbroken.run_dir)
        .drop_columns(["shard"])
        .equals(decisions(RunDirectory(run)).drop_columns(["shard"]))
    )
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    resumed = next(e for e in events if e["event"] == "resumed")
    assert (resumed["from_step"], resumed["runtime"], resumed["shards"]) == (2, "local", 3)
    step4 = sorted(p.name for p in (run / "steps" / "step=4").iterdir())
    assert step4 == ["shard=0.parquet", "shard=1.parquet", "shard=2.parquet"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--runtime", "slurm"], "runtime.kind"),
        (["--shards", "0"], "runtime.shards"),
    ],
)
def test_bad_resume_overrides_exit_2_naming_the_field(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    run = crashed_run(tmp_path, "bad")
    before = (run / "events.jsonl").read_text()
    result = runner.invoke(cli.app, ["resume", str(run), *flags, "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert (run / "events.jsonl").read_text() == before  # nothing touched
