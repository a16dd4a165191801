"""Pause, resume and stop a running driver through the run directory; resume after stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from megasim.config import load_config
from megasim.run import resume_simulation, run_simulation
from megasim.simulation import StepOutcome
from megasim.store.bus import post_command, read_status
from megasim.store.run_dir import RunDirectory


def _events(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _decisions(run: Path) -> list[dict[str, object]]:
    table = RunDirectory(run).read_decisions().drop_columns(["latency_ms"])
    return table.sort_by([("step", "ascending"), ("agent_id", "ascending")]).to_pylist()


def _config(write_config: Callable[..., Path], rounds: int = 4) -> Path:
    return write_config(
        rounds=rounds,
        models={"fast": {"backend": "surrogate", "latency_s": 0.01}},
        population={
            "size": 300,
            "groups": 2,
            "attributes": {"prompt_variant": {"dist": "categorical", "weights": {"P1": 1.0}}},
        },
    )


def test_stop_then_resume_gives_the_uninterrupted_decisions(
    write_config: Callable[..., Path],
) -> None:
    cfg = load_config(_config(write_config))
    whole = asyncio.run(run_simulation(cfg, run_id="whole"))
    assert not whole.stopped

    def stop_after_two(outcome: StepOutcome) -> None:
        if outcome.step == 2:
            post_command(whole.run_dir.path.parent / "cut", "stop", "test")

    cut = asyncio.run(run_simulation(cfg, on_step=stop_after_two, run_id="cut"))
    assert cut.stopped
    assert [s.step for s in cut.steps] == [1, 2]
    kinds = [e["event"] for e in _events(cut.run_dir.path)]
    assert kinds[-2:] == ["stop_requested", "stopped"]
    assert read_status(cut.run_dir.path)["state"] == "stopped"  # type: ignore[index]
    resumed = asyncio.run(resume_simulation(cut.run_dir.path))
    assert [s.step for s in resumed.steps] == [1, 2, 3, 4]
    assert _decisions(cut.run_dir.path) == _decisions(whole.run_dir.path)


def test_pause_holds_the_next_step_until_resumed(write_config: Callable[..., Path]) -> None:
    cfg = load_config(_config(write_config, rounds=3))
    run_path = Path(cfg.out_dir) / "paused"
    seen: dict[str, object] = {}

    def pause_after_one(outcome: StepOutcome) -> None:
        if outcome.step == 1:
            post_command(run_path, "pause", "test")

    async def unpause_later() -> None:
        for _ in range(100):  # wait until the driver says it is paused
            await asyncio.sleep(0.05)
            status = read_status(run_path)
            if status and status["state"] == "paused":
                seen["status"] = status
                break
        await asyncio.sleep(0.3)
        seen["steps_while_paused"] = len(RunDirectory(run_path).read_metrics())
        post_command(run_path, "resume", "test")

    async def both() -> None:
        waiter = asyncio.create_task(unpause_later())
        await run_simulation(cfg, on_step=pause_after_one, run_id="paused")
        await waiter

    asyncio.run(both())
    assert seen["status"]["paused"] is True  # type: ignore[index]
    assert seen["steps_while_paused"] == 1
    kinds = [e["event"] for e in _events(run_path)]
    for kind in ("pause_requested", "paused", "resume_requested", "unpaused", "done"):
        assert kind in kinds
    assert kinds.index("paused") < kinds.index("unpaused")
    assert all(
        e.get("origin") == "test" for e in _events(run_path) if "requested" in str(e["event"])
    )


def test_restart_shard_refused_on_the_local_runtime(write_config: Callable[..., Path]) -> None:
    cfg = load_config(_config(write_config, rounds=2))
    run_path = Path(cfg.out_dir) / "local"

    def ask_restart(outcome: StepOutcome) -> None:
        if outcome.step == 1:
            post_command(run_path, "restart_shard", "test", shard=0)

    result = asyncio.run(run_simulation(cfg, on_step=ask_restart, run_id="local"))
    assert len(result.steps) == 2
    refused = [e for e in _events(run_path) if e["event"] == "command_refused"]
    assert refused
    assert "cannot restart" in str(refused[0]["reason"])


def test_status_reports_progress_and_shard_health(write_config: Callable[..., Path]) -> None:
    cfg = load_config(_config(write_config, rounds=2))
    result = asyncio.run(run_simulation(cfg, run_id="status"))
    status = read_status(result.run_dir.path)
    assert status is not None
    assert status["state"] == "done"
    assert status["steps_done"] == 2
    assert status["agents"] == 300
    assert status["shards"]
    assert status["shards"][0]["agents"] == 300
    assert {"pid", "cpu_percent", "rss_mb", "model_calls_in_flight"} <= set(status["shards"][0])


def test_commands_left_by_a_dead_driver_are_dropped_not_replayed(
    write_config: Callable[..., Path],
) -> None:
    cfg = load_config(_config(write_config, rounds=3))
    run_path = Path(cfg.out_dir) / "stale"

    def stop_after_one(outcome: StepOutcome) -> None:
        if outcome.step == 1:
            post_command(run_path, "stop", "test")

    cut = asyncio.run(run_simulation(cfg, on_step=stop_after_one, run_id="stale"))
    assert cut.stopped
    post_command(run_path, "stop", "studio 10.0.0.9")  # reached no driver: nobody took it
    resumed = asyncio.run(resume_simulation(run_path))
    assert not resumed.stopped
    assert [s.step for s in resumed.steps] == [1, 2, 3]
    dropped = [e for e in _events(run_path) if e["event"] == "command_dropped"]
    assert [(e["action"], e["origin"]) for e in dropped] == [("stop", "studio 10.0.0.9")]
