"""Social network at scale: graph build, and one step with sparse or full activation.

    .venv/bin/python benchmarks/bench_network.py --agents 1000000 --degree 10
    .venv/bin/python benchmarks/bench_network.py --agents 100000 --fractions 1.0

Builds a scale-free follow graph (``degree`` follows per agent), then runs one step of
social_opinion on the surrogate model per activity fraction (local runtime, one shard,
a warm-up step first so every measured step reads posts), printing JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from megasim.activity import ActivityPlan, ActivitySettings
from megasim.config import SimulationConfig
from megasim.env.network_generators import scale_free
from megasim.run import build_population
from megasim.runtime.local import LocalRuntime
from megasim.scenarios.social_opinion import SocialOpinion
from megasim.simulation import Simulation
from megasim.store.run_dir import RunDirectory


async def step_with(config: SimulationConfig, fractions: list[float], out: Path) -> None:
    scenario = SocialOpinion()
    started = time.perf_counter()
    population = build_population(config)
    run_dir = RunDirectory.create(out, "bench")
    runtime = LocalRuntime(config, population, run_dir)
    await runtime.start()
    sim = Simulation(config, runtime, scenario.build_env(config, population), run_dir)
    print(json.dumps({"setup_s": round(time.perf_counter() - started, 2)}), flush=True)
    warm = ActivityPlan.build(ActivitySettings(probability=0.01), config.seed, population)
    runtime.shards[0].activity = warm
    await sim.step()  # warm-up: some posts exist before the measured steps
    for fraction in fractions:
        plan = ActivityPlan.build(ActivitySettings(probability=fraction), config.seed, population)
        runtime.shards[0].activity = plan
        t = time.perf_counter()
        outcome = await sim.step()
        print(
            json.dumps(
                {
                    "agents": population.num_rows,
                    "fraction": fraction,
                    "active": outcome.metrics["active"],
                    "calls": outcome.metrics["decisions"],
                    "step_s": round(time.perf_counter() - t, 3),
                }
            ),
            flush=True,
        )
    await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--degree", type=int, default=10)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    args = parser.parse_args()
    t = time.perf_counter()
    graph = scale_free(args.agents, args.degree, seed=1)
    print(
        json.dumps(
            {
                "agents": args.agents,
                "edges": graph.edges,
                "build_s": round(time.perf_counter() - t, 2),
                "bytes_per_edge": round(graph.nbytes / graph.edges, 2),
            }
        ),
        flush=True,
    )
    del graph
    with tempfile.TemporaryDirectory() as tmp:
        config = SimulationConfig.model_validate(
            {
                "scenario": "megasim.scenarios.social_opinion:SocialOpinion",
                "seed": 1,
                "rounds": 9,
                "social": {"graph": {"kind": "scale_free", "degree": args.degree}},
                "population": {"size": args.agents, "groups": 4},
                "models": {"s": {"backend": "surrogate"}},
                "out_dir": tmp,
            }
        )
        asyncio.run(step_with(config, args.fractions, Path(tmp)))


if __name__ == "__main__":
    main()
