"""Social network at scale: graph build, and one step with sparse or full activation.

    .venv/bin/python benchmarks/bench_network.py --agents 1000000 --degree 10
    .venv/bin/python benchmarks/bench_network.py --agents 1000000 --runtime ray --shards 2
    .venv/bin/python benchmarks/bench_network.py --agents 100000 --fractions 1.0

Builds a scale-free follow graph (``degree`` follows per agent) and reports its build time
and bytes per edge; then, per activity fraction, runs social_opinion on the surrogate for
two steps (the first warms the feeds up) and reports the second, printing JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from megasim.config import SimulationConfig
from megasim.env.network_generators import scale_free
from megasim.run import run_simulation


def run_one(args: argparse.Namespace, fraction: float, out: Path) -> dict[str, Any]:
    """A 2-step run: the first step fills the feeds, the second is measured. Activity
    comes from the run config (``activity.probability``), as users set it."""
    data = {
        "scenario": "social_opinion",
        "seed": 1,
        "rounds": 2,
        "social": {"graph": {"kind": "scale_free", "degree": args.degree}},
        "population": {"size": args.agents, "groups": 4},
        "models": {"s": {"backend": "surrogate"}},
        "activity": {"probability": fraction},
        "runtime": {"kind": args.runtime, "shards": args.shards, "cpus_per_shard": 0},
        "out_dir": str(out),
    }
    started = time.perf_counter()
    result = asyncio.run(run_simulation(SimulationConfig.model_validate(data)))
    total = time.perf_counter() - started
    measured = result.steps[-1].metrics
    return {
        "agents": args.agents,
        "runtime": f"{args.runtime} x {args.shards}",
        "fraction": fraction,
        "active": measured["active"],
        "calls": measured["decisions"],
        "step_s": measured["wall_s"],
        "run_s": round(total, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--degree", type=int, default=10)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--runtime", choices=["local", "ray"], default="local")
    parser.add_argument("--shards", type=int, default=1)
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
    for fraction in args.fractions:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_one(args, fraction, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
