"""One round of N surrogate agents (no latency) in the local runtime.

Reports wall time of the round (agents act, decisions written to Parquet, reduction),
the whole run (population sampling, agent construction, round), peak RSS, and the
resident memory per agent of the built shard (agents + personas + prompt cache).

    python benchmarks/bench_surrogate_round.py --agents 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil
from repeat import print_medians, runs_in_fresh_processes

from megasim.config import SimulationConfig
from megasim.model.factory import build_models
from megasim.run import build_population
from megasim.runtime.local import LocalRuntime
from megasim.scenarios import get_scenario
from megasim.simulation import Simulation
from megasim.store.run_dir import RunDirectory


def make_config(agents: int, out: Path, shards: int) -> SimulationConfig:
    return SimulationConfig.model_validate(
        {
            "name": "bench",
            "seed": 1,
            "rounds": 1,
            "population": {
                "size": agents,
                "attributes": {
                    "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P2": 0.5}}
                },
            },
            "models": {"surrogate": {"backend": "surrogate"}},
            "runtime": {"kind": "local", "shards": shards},
            "out_dir": str(out),
        }
    )


async def one_run(agents: int, shards: int) -> dict[str, float]:
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(agents, Path(tmp), shards)
        scenario = get_scenario(config.scenario)
        started = time.perf_counter()
        population = build_population(config)
        sampled = time.perf_counter()
        run_dir = RunDirectory.create(Path(tmp), "bench")
        models = build_models(config.models, {"surrogate"})
        gc.collect()
        rss_before = process.memory_info().rss
        runtime = LocalRuntime(config, population, run_dir, models)
        await runtime.start()
        built = time.perf_counter()
        gc.collect()
        rss_agents = process.memory_info().rss - rss_before
        sim = Simulation(config, runtime, scenario.build_env(config, population), run_dir)
        step_started = time.perf_counter()
        outcome = await sim.step()
        finished = time.perf_counter()
        assert outcome.outcome["valid"] == agents, outcome.outcome
        await runtime.close()
    return {
        "sample_s": sampled - started,
        "build_s": built - sampled,
        "round_s": finished - step_started,
        "total_s": finished - started,
        "bytes_per_agent": rss_agents / agents,
    }


def child(agents: int, shards: int) -> None:
    """One measured run in this (fresh) process, printed as JSON for the parent."""
    result = asyncio.run(one_run(agents, shards))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.agents, args.shards)
        return
    # each repeat in a fresh process, so memory figures are not skewed by earlier runs
    command = [sys.executable, __file__, "--child", f"--agents={args.agents}"]
    runs = runs_in_fresh_processes([*command, f"--shards={args.shards}"], args.repeat)
    title = f"agents={args.agents:,} shards={args.shards} repeat={args.repeat} (fresh process each)"
    print_medians(title, runs, digits=2)


if __name__ == "__main__":
    main()
