"""RayRuntime on a real two-node Ray cluster started by the tests on this machine."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

# Token authentication (Ray's default) for the test cluster. Ray reads these settings when
# it is imported, so they are set before the import; the cluster fixture writes the token.
TEMP_DIR = f"/tmp/msray-{os.getpid()}"  # short: Ray's socket paths have a length limit
TOKEN = Path(f"{TEMP_DIR}-token")
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(TOKEN)

pytest.importorskip("ray")

import ray  # noqa: E402

from megasim.config import SimulationConfig  # noqa: E402
from megasim.run import build_population, run_simulation  # noqa: E402
from megasim.runtime.ray_runtime import RayRuntime  # noqa: E402
from megasim.scenarios import get_scenario  # noqa: E402
from megasim.simulation import Simulation  # noqa: E402
from megasim.store.run_dir import RunDirectory  # noqa: E402
from tests.runtime.test_checkpoint import config_data, decisions, kill_driver_then_resume  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_processes(temp_dir: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if temp_dir in cmdline:
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Head node (resource head_node) + a second node (resource worker_node), token auth."""
    temp_dir, token = TEMP_DIR, TOKEN
    token.write_text(secrets.token_hex(32))
    env = dict(os.environ)
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
    head = [RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}"]
    head += [*common, '--resources={"head_node": 1}', "--include-dashboard=false"]
    worker = [RAY, "start", f"--address={address}", *common, '--resources={"worker_node": 1}']
    worker += [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]
    # worker processes' ports: below Linux's ephemeral range (32768+), where free_port()
    # picks the others, so the two can never overlap
    lo = 20000 + (os.getpid() % 50) * 200
    worker += [f"--min-worker-port={lo}", f"--max-worker-port={lo + 199}"]
    try:
        for command in (head, worker):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        leftovers = ray_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        token.unlink(missing_ok=True)
        assert not leftovers, f"Ray processes left behind: {leftovers}"


def ray_config(tmp_path: Path, address: str, **runtime: Any) -> SimulationConfig:
    data = config_data(tmp_path, rounds=3)
    data["runtime"] = {"kind": "ray", "address": address, "cpus_per_shard": 0, **runtime}
    return SimulationConfig.model_validate(data)


async def test_game_across_two_nodes_equals_local(cluster: str, tmp_path: Path) -> None:
    pinned = {0: {"head_node": 0.01}, 1: {"worker_node": 0.01}}
    result = await run_simulation(
        ray_config(tmp_path, cluster, shards=2, shard_resources=pinned), run_id="ray2"
    )
    nodes = {s["node"] for m in result.run_dir.read_metrics() for s in m["shards"]}
    assert len(nodes) == 2  # agents ran on both nodes
    assert None not in nodes
    local = await run_simulation(
        SimulationConfig.model_validate(config_data(tmp_path, rounds=3)), run_id="local"
    )
    assert (
        decisions(result.run_dir)
        .drop_columns(["shard"])
        .equals(decisions(local.run_dir).drop_columns(["shard"]))
    )
    assert [s.outcome for s in result.steps] == [s.outcome for s in local.steps]


async def test_one_and_four_shards_equal_local(cluster: str, tmp_path: Path) -> None:
    local = await run_simulation(
        SimulationConfig.model_validate(config_data(tmp_path, rounds=3)), run_id="local"
    )
    expected = decisions(local.run_dir).drop_columns(["shard"])
    for shards in (1, 4):
        result = await run_simulation(
            ray_config(tmp_path, cluster, shards=shards), run_id=f"ray{shards}"
        )
        table = decisions(result.run_dir)
        assert len(set(table.column("shard").to_pylist())) == shards
        assert table.drop_columns(["shard"]).equals(expected)


async def test_killed_shard_actor_is_rebuilt_and_step_rerun(cluster: str, tmp_path: Path) -> None:
    data = config_data(tmp_path, rounds=3, latency=0.5)  # a step lasts ~0.5 s
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    config = SimulationConfig.model_validate(data)
    population = build_population(config)
    run_dir = RunDirectory.create(tmp_path, "killed")
    run_dir.write_population(population)
    runtime = RayRuntime(config, population, run_dir)
    scenario = get_scenario(config.scenario)
    await runtime.start()
    try:
        sim = Simulation(config, runtime, scenario.build_env(config, population), run_dir)
        await sim.step()

        async def kill_soon() -> None:
            await asyncio.sleep(0.25)  # in the middle of step 2
            ray.kill(runtime.actors[1], no_restart=True)

        killer = asyncio.create_task(kill_soon())
        await sim.step()
        await killer
        await sim.step()
        # per-shard progress and health were polled while the steps ran
        health = runtime.health[0]
        expected = {"agents", "step", "done", "node", "cpu_percent", "rss_mb"}
        assert expected | {"model_calls_in_flight"} <= set(health)
        assert health["agents"] == 200
    finally:
        await runtime.close()
    unbroken_config = SimulationConfig.model_validate(config_data(tmp_path, rounds=3))
    unbroken = await run_simulation(unbroken_config, run_id="unbroken")
    assert (
        decisions(run_dir)
        .drop_columns(["shard"])
        .equals(decisions(unbroken.run_dir).drop_columns(["shard"]))
    )
    events = [json.loads(x)["event"] for x in run_dir.events_path.read_text().splitlines()]
    assert "shard_lost" in events
    assert "shard_restarted" in events


def test_kill_driver_then_resume_ray(cluster: str, tmp_path: Path) -> None:
    data = config_data(tmp_path / "runs", latency=0.4)
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    kill_driver_then_resume(tmp_path, data, [])
