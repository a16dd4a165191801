"""The paper's scalability test: one round of dummy agents, each waiting for an emulated
model call of 1 s and answering a random number (the surrogate with ``latency_s: 1``).

AgentScope reported 1,000,000 such agents in 40 s on 4 machines of 64 cores. Reports the
round's wall time, the whole run, and memory per agent, for the local runtime and Ray.

    python benchmarks/bench_dummy_latency.py --agents 100000 --runtime local
    python benchmarks/bench_dummy_latency.py --agents 1000000 --runtime ray --shards 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from repeat import print_medians, runs_in_fresh_processes

from megasim.config import SimulationConfig
from megasim.run import build_population, make_runtime
from megasim.scenarios import get_scenario
from megasim.simulation import Simulation
from megasim.store.run_dir import RunDirectory


def make_config(agents: int, out: Path, runtime: str, shards: int) -> SimulationConfig:
    return SimulationConfig.model_validate(
        {
            "name": "dummy",
            "seed": 1,
            "rounds": 1,
            "population": {"size": agents},
            "models": {"dummy": {"backend": "surrogate", "latency_s": 1.0}},
            "runtime": {"kind": runtime, "shards": shards, "cpus_per_shard": 0},
            "out_dir": str(out),
        }
    )


async def one_run(agents: int, runtime_kind: str, shards: int) -> dict[str, Any]:
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(agents, Path(tmp), runtime_kind, shards)
        scenario = get_scenario(config.scenario)
        population = build_population(config)
        run_dir = RunDirectory.create(Path(tmp), "bench")
        rss_before = process.memory_info().rss
        runtime = make_runtime(config, population, run_dir)
        await runtime.start()
        sim = Simulation(config, runtime, scenario.build_env(config, population), run_dir)
        started = time.perf_counter()
        outcome = await sim.step()
        round_s = time.perf_counter() - started
        assert outcome.outcome["valid"] == agents, outcome.outcome
        if runtime_kind == "ray":
            healths = await asyncio.gather(*(a.health.remote() for a in runtime.actors))  # type: ignore[attr-defined]
            rss_mb = sum(h["rss_mb"] for h in healths)
        else:
            rss_mb = (process.memory_info().rss - rss_before) / 2**20
        await runtime.close()
    return {"round_s": round_s, "kib_per_agent": rss_mb * 1024 / agents}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--runtime", choices=["local", "ray"], default="local")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(one_run(args.agents, args.runtime, args.shards))))
        return
    command = [sys.executable, __file__, "--child", f"--agents={args.agents}"]
    command += [f"--runtime={args.runtime}", f"--shards={args.shards}"]
    runs = runs_in_fresh_processes(command, args.repeat)
    print_medians(f"agents={args.agents:,} runtime={args.runtime} shards={args.shards}", runs)


if __name__ == "__main__":
    main()
