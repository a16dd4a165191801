"""Chat rooms at scale: keyed environment state (room transcripts) read and written by
every agent each step; surrogate model (a labelled non-LLM stand-in), no latency.

Reports the median wall time of steps 2..R (step 1 reads empty rooms) and the agents
handled per second (each reads its room and posts), for the local runtime or Ray with K
shards and P partition actors.

    python benchmarks/bench_chat_rooms.py --agents 100000 --room-size 100
    python benchmarks/bench_chat_rooms.py --agents 100000 --runtime ray --shards 2 --partitions 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from repeat import print_medians, runs_in_fresh_processes

from megasim.config import SimulationConfig
from megasim.run import run_simulation


def make_config(args: argparse.Namespace, out: Path) -> SimulationConfig:
    return SimulationConfig.model_validate(
        {
            "name": "chat-bench",
            "scenario": "chat_opinion",
            "seed": 1,
            "rounds": args.rounds,
            "chat": {"window": args.window},
            "population": {"size": args.agents, "groups": max(1, args.agents // args.room_size)},
            "models": {"surrogate": {"backend": "surrogate"}},
            "runtime": {
                "kind": args.runtime,
                "shards": args.shards,
                "env_partitions": args.partitions,
                "cpus_per_shard": 0,
            },
            "out_dir": str(out),
        }
    )


async def one_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = await run_simulation(make_config(args, Path(tmp)), run_id="bench")
        run_s = time.perf_counter() - started
        walls = [float(m["wall_s"]) for m in result.run_dir.read_metrics()]
    step_s = statistics.median(walls[1:]) if len(walls) > 1 else walls[0]
    return {"step_s": step_s, "agents_per_s": args.agents / step_s, "run_s": run_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--room-size", type=int, default=100)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtime", choices=["local", "ray"], default="local")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(one_run(args))))
        return
    runs = runs_in_fresh_processes(
        [sys.executable, __file__, "--child", *sys.argv[1:]], args.repeat
    )
    print_medians(
        f"agents={args.agents:,} rooms of {args.room_size} window={args.window} "
        f"runtime={args.runtime} shards={args.shards} partitions={args.partitions}",
        runs,
    )


if __name__ == "__main__":
    main()
