"""One step of the segregation scenario on a big grid, surrogate model, local runtime.

Default: a 1000 x 1000 torus (1M cells) with 500k residents in two groups. Reports
the build time (population sampling; environment: placement and group codes; agents),
the snapshot (size, encode and decode+prepare time), the step's wall time from
metrics.jsonl (agents observe and act, decisions written, moves resolved and measured
on the driver), and peak RSS.

    python benchmarks/bench_grid.py --side 1000 --agents 500000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from megasim.config import SimulationConfig
from megasim.run import build_population
from megasim.runtime.local import LocalRuntime
from megasim.scenarios.segregation import Segregation
from megasim.simulation import Simulation
from megasim.store.run_dir import RunDirectory


def make_config(side: int, agents: int, out: Path, shards: int) -> SimulationConfig:
    return SimulationConfig.model_validate(
        {
            "name": "bench-grid",
            "scenario": "megasim.scenarios.segregation:Segregation",
            "seed": 1,
            "rounds": 1,
            "segregation": {"width": side, "height": side},
            "population": {"size": agents, "groups": 2},
            "models": {"s": {"backend": "surrogate"}},
            "runtime": {"shards": shards},
            "out_dir": str(out),
        }
    )


async def bench(side: int, agents: int, shards: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(side, agents, Path(tmp), shards)
        started = time.perf_counter()
        population = build_population(config)
        figures["population_s"] = time.perf_counter() - started
        scenario = Segregation()
        started = time.perf_counter()
        env = scenario.build_env(config, population)
        figures["build_env_s"] = time.perf_counter() - started
        started = time.perf_counter()
        snapshot = env.snapshot()
        figures["snapshot_encode_s"] = time.perf_counter() - started
        figures["snapshot_mb"] = len(json.dumps(snapshot)) / 1e6
        replica = scenario.build_env(config, population)
        started = time.perf_counter()
        replica.restore(snapshot)
        replica.prepare()
        figures["snapshot_restore_prepare_s"] = time.perf_counter() - started
        run_dir = RunDirectory.create(Path(tmp), "bench")
        runtime = LocalRuntime(config, population, run_dir)
        started = time.perf_counter()
        await runtime.start()  # builds each shard's agents and environment replica
        figures["build_shards_s"] = time.perf_counter() - started
        sim = Simulation(config, runtime, env, run_dir)
        started = time.perf_counter()
        outcome = await sim.step()
        figures["step_s"] = time.perf_counter() - started  # includes the checkpoint
        figures["step_wall_s_metrics"] = float(outcome.metrics["wall_s"])
        figures["moved"] = float(outcome.outcome["moved"])
        figures["lost"] = float(outcome.outcome["lost"])
        await runtime.close()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1000, help="grid side (cells = side^2)")
    parser.add_argument("--agents", type=int, default=500_000)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    figures = asyncio.run(bench(args.side, args.agents, args.shards))
    print(json.dumps({"cells": args.side**2, "agents": args.agents, **figures}, indent=1))


if __name__ == "__main__":
    main()
