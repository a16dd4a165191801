"""RayRuntime on a real two-node Ray cluster started by the tests on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.runtime.conftest import WORKER_PORTS, node_command

pytest.importorskip("ray")

import ray
from ray.exceptions import RayActorError

from megasim.config import SimulationConfig, load_config
from megasim.model.fake_server import FakeServer
from megasim.run import build_population, run_simulation
from megasim.runtime.ray_runtime import NodeGoneError, RayRuntime
from megasim.scenarios import get_scenario
from megasim.simulation import Simulation
from megasim.store.run_dir import RunDirectory
from tests.runtime.test_checkpoint import config_data, decisions, kill_driver_then_resume
from tests.scenarios.test_chat_opinion import chat_data

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def same_decisions(run: RunDirectory, other: RunDirectory) -> bool:
    """Equal decisions, whichever shard took them."""
    return bool(
        decisions(run).drop_columns(["shard"]).equals(decisions(other).drop_columns(["shard"]))
    )


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
    assert same_decisions(result.run_dir, local.run_dir)
    assert [s.outcome for s in result.steps] == [s.outcome for s in local.steps]


async def test_relative_out_dir_is_the_drivers_not_each_nodes(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Actors run in Ray's working directory, not the driver's: a relative out_dir must be
    resolved by the driver, or decisions land elsewhere without an error."""
    driver_cwd = tmp_path / "driver"
    driver_cwd.mkdir()
    monkeypatch.chdir(driver_cwd)
    data = config_data(Path("runs"), rounds=2)  # relative to the driver's directory
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    result = await run_simulation(SimulationConfig.model_validate(data), run_id="relative")
    run = RunDirectory(driver_cwd / "runs" / "relative")
    assert run.read_decisions().num_rows == 2 * 400
    assert sorted(p.name for p in (run.path / "steps" / "step=2").iterdir()) == [
        "shard=0.parquet",
        "shard=1.parquet",
    ]
    assert (run.path / "checkpoints" / "step=2" / "driver.json").is_file()
    assert [s.step for s in result.steps] == [1, 2]


async def test_local_run_resumed_on_the_cluster(cluster: str, tmp_path: Path) -> None:
    """`megasim resume --runtime ray --address ... --shards 2` of a run started locally."""
    from megasim.run import resume_simulation
    from megasim.simulation import StepOutcome

    def crash_after_two(outcome: StepOutcome) -> None:
        if outcome.step == 2:
            raise KeyboardInterrupt

    local = SimulationConfig.model_validate(config_data(tmp_path, rounds=4))
    with pytest.raises(KeyboardInterrupt):
        await run_simulation(local, on_step=crash_after_two, run_id="moved")
    overrides = {"runtime": "ray", "address": cluster, "shards": 2}
    resumed = await resume_simulation(tmp_path / "moved", overrides=overrides)
    nodes = {s["node"] for m in resumed.run_dir.read_metrics()[2:] for s in m["shards"]}
    assert None not in nodes  # steps 3-4 ran in Ray actors
    unbroken = await run_simulation(local, run_id="unbroken")
    assert same_decisions(resumed.run_dir, unbroken.run_dir)


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


async def three_steps_with_a_failure(
    config: SimulationConfig, run_dir: RunDirectory, fail: Callable[[RayRuntime], None]
) -> RayRuntime:
    """Run 3 steps on Ray, calling ``fail(runtime)`` 0.25 s into step 2 (mid-step, as the
    model latency is 0.5 s); the runtime is closed on return, its state kept for checks."""
    population = build_population(config)
    run_dir.write_population(population)
    runtime = RayRuntime(config, population, run_dir)
    scenario = get_scenario(config.scenario)
    await runtime.start()
    try:
        sim = Simulation(config, runtime, scenario.build_env(config, population), run_dir)
        await sim.step()

        async def fail_soon() -> None:
            await asyncio.sleep(0.25)
            fail(runtime)

        failing = asyncio.create_task(fail_soon())
        await sim.step()
        await failing
        await sim.step()
    finally:
        await runtime.close()
    return runtime


async def test_killed_shard_actor_is_rebuilt_and_step_rerun(cluster: str, tmp_path: Path) -> None:
    data = config_data(tmp_path, rounds=3, latency=0.5)  # a step lasts ~0.5 s
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    run_dir = RunDirectory.create(tmp_path, "killed")
    runtime = await three_steps_with_a_failure(
        SimulationConfig.model_validate(data),
        run_dir,
        lambda runtime: ray.kill(runtime.actors[1], no_restart=True),
    )
    # per-shard progress and health were polled while the steps ran
    health = runtime.health[0]
    expected = {"agents", "step", "done", "node", "cpu_percent", "rss_mb"}
    assert expected | {"model_calls_in_flight"} <= set(health)
    assert health["agents"] == 200
    unbroken_config = SimulationConfig.model_validate(config_data(tmp_path, rounds=3))
    unbroken = await run_simulation(unbroken_config, run_id="unbroken")
    assert same_decisions(run_dir, unbroken.run_dir)
    events = [json.loads(x)["event"] for x in run_dir.events_path.read_text().splitlines()]
    assert "shard_lost" in events
    assert "shard_restarted" in events


def test_kill_driver_then_resume_ray(cluster: str, tmp_path: Path) -> None:
    data = config_data(tmp_path / "runs", latency=0.4)
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    kill_driver_then_resume(tmp_path, data, [])


class DoomedNode:
    """A Ray node (resource doomed_node) in a session of its own, for a test to kill."""

    def __init__(self, address: str) -> None:
        command = [*node_command(address, "doomed_node", WORKER_PORTS + 200), "--block"]
        self.launcher = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.hit: dict[psutil.Process, str] = {}  # every process signalled, with its name

    def signal(self, sig: signal.Signals) -> None:
        """Signal the node's whole process tree: its session (launcher, raylet, agents) and
        the raylet's workers, which run in process groups of their own."""
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = psutil.Process(self.launcher.pid)
            for proc in [tree, *tree.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.hit.setdefault(proc, proc.name())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.launcher.pid, sig)
        for proc in self.hit:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)


@pytest.fixture
def doomed_node(cluster: str) -> Iterator[DoomedNode]:
    """The node is SIGKILLed at teardown (stopped processes too), and must then be gone."""
    node = DoomedNode(cluster)
    try:
        yield node
    finally:
        node.signal(signal.SIGKILL)
        node.launcher.wait(timeout=30)
        _, alive = psutil.wait_procs(list(node.hit), timeout=30)
        assert not alive, f"processes of the killed node left behind: {alive}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
async def test_dead_node_shard_moves_and_step_reruns(
    cluster: str, doomed_node: DoomedNode, tmp_path: Path, sig: signal.Signals
) -> None:
    """The whole node of a pinned shard dies (or hangs: no socket closes, only Ray's health
    checks notice) mid-step: the shard restarts unpinned elsewhere and reruns the step."""
    data = config_data(tmp_path, rounds=3, latency=0.5)  # a step lasts ~0.5 s
    pinned = {0: {"head_node": 0.01}, 1: {"doomed_node": 0.01}}
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    data["runtime"]["shard_resources"] = pinned
    run_dir = RunDirectory.create(tmp_path, "node-died")
    nodes: list[str] = []

    def kill_node(runtime: RayRuntime) -> None:
        nodes.append(runtime.nodes_of[1])  # the doomed node, hosting shard 1 since start
        doomed_node.signal(sig)

    await three_steps_with_a_failure(SimulationConfig.model_validate(data), run_dir, kill_node)
    doomed = nodes[0]
    names = set(doomed_node.hit.values())  # the node's whole tree, the shard's worker too
    assert "raylet" in names
    assert any(n.startswith("ray::ShardActor") for n in names), names

    unbroken_config = SimulationConfig.model_validate(config_data(tmp_path, rounds=3))
    unbroken = await run_simulation(unbroken_config, run_id="unbroken")
    assert same_decisions(run_dir, unbroken.run_dir)
    events: dict[str, dict[str, Any]] = {}
    for line in run_dir.events_path.read_text().splitlines():
        record = json.loads(line)
        events.setdefault(record["event"], record)
    assert events["shard_lost"]["shard"] == 1
    assert events["shard_lost"]["node"] == doomed
    assert events["shard_moved"]["old_node"] == doomed
    assert events["shard_restarted"]["node"] not in (None, doomed)
    shard_nodes = [{s["shard"]: s["node"] for s in m["shards"]}[1] for m in run_dir.read_metrics()]
    assert shard_nodes[0] == doomed  # step 1 ran on the doomed node, the others elsewhere
    assert shard_nodes[1:] == [events["shard_restarted"]["node"]] * 2


async def test_chat_rooms_in_partition_actors_equal_local(cluster: str, tmp_path: Path) -> None:
    """Keyed state (room transcripts) in 3 partition actors, 2 shards on two nodes: the
    discussion is the one of a single local shard with a single in-process partition."""
    pinned = {0: {"head_node": 0.01}, 1: {"worker_node": 0.01}}
    runtime = {"kind": "ray", "address": cluster, "cpus_per_shard": 0, "shard_resources": pinned}
    data = chat_data(tmp_path, rounds=3, shards=2, env_partitions=3, **runtime)
    result = await run_simulation(SimulationConfig.model_validate(data), run_id="ray-chat")
    local = await run_simulation(
        SimulationConfig.model_validate(chat_data(tmp_path, rounds=3)), run_id="local-chat"
    )
    assert same_decisions(result.run_dir, local.run_dir)
    assert [s.outcome for s in result.steps] == [s.outcome for s in local.steps]
    keyed = result.run_dir.path / "checkpoints" / "step=3" / "keyed"
    assert sorted(p.name for p in keyed.iterdir()) == [f"partition={i}.jsonl" for i in range(3)]


async def test_lost_partition_actor_rolls_back_and_reruns_the_step(
    cluster: str, tmp_path: Path
) -> None:
    data = chat_data(tmp_path, rounds=3, kind="ray", address=cluster, shards=2, env_partitions=2)
    data["runtime"]["cpus_per_shard"] = 0
    data["models"] = {"s": {"backend": "surrogate", "latency_s": 0.5}}  # a step lasts ~0.5 s
    run_dir = RunDirectory.create(tmp_path, "partition-lost")
    await three_steps_with_a_failure(  # agents wait on the model: step 2's ops not yet staged
        SimulationConfig.model_validate(data),
        run_dir,
        lambda runtime: ray.kill(runtime.partitions[1], no_restart=True),
    )
    local = await run_simulation(
        SimulationConfig.model_validate(chat_data(tmp_path, rounds=3)), run_id="local"
    )
    assert same_decisions(run_dir, local.run_dir)
    events = [json.loads(x) for x in run_dir.events_path.read_text().splitlines()]
    lost = [e for e in events if e["event"] == "env_partition_lost"]
    assert lost == [{**lost[0], "step": 2, "partitions": [1]}]
    assert "env_partitions_restored" in {e["event"] for e in events}
    assert "shard_lost" not in {e["event"] for e in events}  # shards were fine


@pytest.mark.parametrize("node", ["head_node", "worker_node"])
async def test_shards_call_the_model_server_of_their_own_node_first(
    cluster: str, tmp_path: Path, node: str
) -> None:
    """Two model servers, one declared per node (by the custom resource only that node
    has); a shard pinned to a node sends every call to that node's server."""
    with FakeServer(latency_s=0.01) as head_server, FakeServer(latency_s=0.01) as worker_server:
        data = config_data(tmp_path, rounds=1)
        endpoints = [
            {"base_url": head_server.base_url, "node": "head_node"},
            {"base_url": worker_server.base_url, "node": "worker_node"},
        ]
        data["models"] = {
            "s": {"backend": "openai", "model": "fake", "api_key_env": None, "endpoints": endpoints}
        }
        data["game"] = {"repair": False}
        data["runtime"] = {"kind": "ray", "address": cluster, "shards": 1, "cpus_per_shard": 0}
        data["runtime"]["shard_resources"] = {0: {node: 0.01}}
        result = await run_simulation(SimulationConfig.model_validate(data), run_id=node)
        calls = {
            "head_node": head_server.counts["requests"],
            "worker_node": worker_server.counts["requests"],
        }
    other = "worker_node" if node == "head_node" else "head_node"
    assert calls[other] == 0  # every call (merged ones carry n samples) to the own node
    assert calls[node] > 0
    assert result.steps[0].outcome["valid"] == 400


async def test_close_after_a_failed_start_releases_everything(cluster: str, tmp_path: Path) -> None:
    """Shard actors that fail to build (a model file that does not exist) leave their nodes
    unknown; close must still kill every actor and disconnect, and the user sees the
    model's error, not an IndexError from the cleanup."""
    data = config_data(tmp_path, rounds=1)
    data["models"] = {"s": {"backend": "local", "path": str(tmp_path / "missing.gguf")}}
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    config = SimulationConfig.model_validate(data)
    runtime = RayRuntime(config, build_population(config), RunDirectory.create(tmp_path, "c"))
    with pytest.raises(RayActorError, match=r"missing\.gguf"):
        await runtime.start()
    assert runtime.nodes_of == []
    await runtime.close()
    assert runtime.actors == []
    assert not ray.is_initialized()


async def test_close_without_a_ray_connection_does_not_start_one(tmp_path: Path) -> None:
    """``ray.kill`` would start (or join) a Ray instance just to fail: a stray connection
    from the test process would outlive the test cluster and kill pytest a minute later."""
    config = ray_config(tmp_path, "unused", shards=2)
    runtime = RayRuntime(config, build_population(config), RunDirectory.create(tmp_path, "c"))
    runtime.actors = [object(), object()]
    runtime.partitions = [object()]
    await runtime.close()
    assert runtime.actors == []
    assert runtime.partitions == []
    assert not ray.is_initialized()


async def test_call_to_an_actor_on_a_dead_node_gives_up(tmp_path: Path) -> None:
    """The driver's own watch: a call whose node left Ray's node table ends, even if Ray
    itself never fails it (no cluster needed: the node table is stubbed)."""
    config = ray_config(tmp_path, "unused", shards=1)
    runtime = RayRuntime(config, build_population(config), RunDirectory.create(tmp_path, "w"))
    runtime.nodes_of = ["gone"]
    runtime._alive = (float("inf"), {"other": {"CPU": 2.0}})  # fresh, without "gone"
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(NodeGoneError):
        await asyncio.wait_for(runtime._until(never, runtime._node_gone(0)), timeout=5)
    assert never.cancelled()


async def test_studio_watches_a_ray_run_and_restarts_a_shard(cluster: str, tmp_path: Path) -> None:
    """A Ray run started as usual shows in the studio (over its run directory only) with
    every shard's node, pid and health; a shard restarted from the studio is rebuilt from
    the last checkpoint, and the decisions equal an unbroken local run's."""
    import httpx

    from tests.studio.conftest import StudioServer

    data = config_data(tmp_path / "runs", rounds=4, latency=0.5)
    data["runtime"] = {"kind": "ray", "address": cluster, "shards": 2, "cpus_per_shard": 0}
    (tmp_path / "runs").mkdir()
    with StudioServer(tmp_path / "runs") as server:
        url = f"{server.url}/api/runs/watched"
        seen: dict[str, Any] = {}

        async def steer() -> None:
            loop = asyncio.get_running_loop()
            while "restart" not in seen:
                await asyncio.sleep(0.2)
                try:
                    view = await loop.run_in_executor(None, lambda: httpx.get(f"{url}/cluster"))
                except httpx.TransportError:
                    continue
                cluster_view = view.json() if view.status_code == 200 else {}
                shards = cluster_view.get("shards", [])
                if cluster_view.get("step") == 2 and len(shards) == 2 and shards[1].get("pid"):
                    seen["shards"] = shards
                    restart = {"action": "restart_shard", "shard": 1}
                    post = functools.partial(httpx.post, f"{url}/control", json=restart)
                    seen["restart"] = await loop.run_in_executor(None, post)

        steering = asyncio.create_task(steer())
        result = await run_simulation(SimulationConfig.model_validate(data), run_id="watched")
        await steering
        events = [e["event"] for e in httpx.get(f"{url}/events").json()]
        history = httpx.get(f"{url}/cluster").json()["history"]
    assert seen["restart"].status_code == 200
    assert {s["shard"] for s in seen["shards"]} == {0, 1}
    assert all(s["pid"] and s["host"] and s["node"] for s in seen["shards"])
    for kind in ("shard_restart_requested", "shard_lost", "shard_restarted", "done"):
        assert kind in events
    assert [h["event"] for h in history][:1] == ["shard_restart_requested"]
    local = await run_simulation(
        SimulationConfig.model_validate(config_data(tmp_path / "local", rounds=4)), run_id="l"
    )
    assert same_decisions(result.run_dir, local.run_dir)


async def test_a_users_file_scenario_runs_on_two_nodes_like_locally(
    cluster: str, tmp_path: Path
) -> None:
    """``scenario: ./file.py:Class``: each shard actor imports the user's file itself (the
    config travels as data with the path made absolute), and the decisions match local."""
    from tests.test_plugins import EXAMPLE
    from tests.test_plugins import config_data as plugin_config

    shutil.copy(EXAMPLE / "public_goods.py", tmp_path / "public_goods.py")
    source = tmp_path / "run.yaml"
    data = plugin_config("./public_goods.py:PublicGoods", tmp_path / "runs", rounds=3)
    source.write_text(yaml.safe_dump(data))
    local = await run_simulation(load_config(source), run_id="local")
    ray_data = {**data, "runtime": {"kind": "ray", "address": cluster, "shards": 2}}
    ray_data["runtime"]["shard_resources"] = {0: {"head_node": 0.01}, 1: {"worker_node": 0.01}}
    ray_data["runtime"]["cpus_per_shard"] = 0
    source.write_text(yaml.safe_dump(ray_data))
    distributed = await run_simulation(load_config(source), run_id="ray")
    nodes = {s["node"] for m in distributed.run_dir.read_metrics() for s in m["shards"]}
    assert len(nodes) == 2
    assert same_decisions(local.run_dir, distributed.run_dir)
    assert [s.outcome["pot"] for s in local.steps] == [s.outcome["pot"] for s in distributed.steps]
