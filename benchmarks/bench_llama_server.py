"""Merging against llama.cpp's real HTTP server (issue 11): decisions/s and tokens per
decision with merging on (limit learned from the server's 400) and off, per prompt
variant; and what preflight adds to a run's start.

The server is xllamacpp's ``Server`` serving the bundled SmolLM2 on 127.0.0.1 with
``--slots`` parallel slots; megasim talks to it as ``backend: openai``. One round of
``--agents`` agents, one group, every agent on the same variant.

Tokens: llama.cpp's server reports ``usage.completion_tokens`` of one choice only when
``n`` > 1 (measured), so completion tokens are also counted from the answers' texts with
the server's own ``/tokenize``; the table shows both.

    python benchmarks/bench_llama_server.py --agents 100 --slots 4 --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

import httpx

from megasim.config import SimulationConfig
from megasim.model.llama_server import llama_server
from megasim.model.preflight import preflight
from megasim.run import run_simulation
from megasim.scenarios.guess_two_thirds import REPAIR_SEPARATOR


def _config(base_url: str, agents: int, variant: str, merge: bool, out: str) -> SimulationConfig:
    return SimulationConfig.model_validate(
        {
            "name": "bench",
            "seed": 11,
            "rounds": 1,
            "population": {
                "size": agents,
                "groups": 1,
                "attributes": {"prompt_variant": {"dist": "categorical", "weights": {variant: 1}}},
            },
            "models": {
                "srv": {
                    "backend": "openai",
                    "base_url": base_url,
                    "model": "smollm2",
                    "api_key_env": None,
                    "merge": merge,
                    "max_concurrency": 16,
                }
            },
            "out_dir": out,
        }
    )


def _counted_tokens(root: str, texts: list[str]) -> int:
    """Completion tokens of the answers, counted by the server's tokenizer."""
    total = 0
    with httpx.Client(base_url=root, timeout=30) as client:
        for text in texts:
            if text:
                total += len(client.post("/tokenize", json={"content": text}).json()["tokens"])
    return total


async def _one(base_url: str, agents: int, variant: str, merge: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        result = await run_simulation(_config(base_url, agents, variant, merge, out))
        rows = result.run_dir.read_decisions().to_pylist()
    metrics = result.steps[0].metrics
    layer = metrics["model_layer"]["srv"]
    (endpoint,) = layer["endpoints"].values()
    texts = [t for r in rows for t in (r["raw_text"] or "").split(REPAIR_SEPARATOR)]
    counted = _counted_tokens(base_url.removesuffix("/v1"), texts)
    wall = float(metrics["wall_s"])
    return {
        "variant": variant,
        "merge": merge,
        "decisions_per_s": round(agents / wall, 2),
        "wall_s": round(wall, 2),
        "calls": endpoint["calls"],
        "rejected_calls": endpoint["errors"].get("4xx", 0),
        "max_n": endpoint["features"]["max_n"],
        "prompt_tokens_per_decision": round(layer["tokens_in"] / agents, 1),
        "completion_tokens_reported": round(layer["tokens_out"] / agents, 1),
        "completion_tokens_counted": round(counted / agents, 1),
        "valid": sum(1 for r in rows if r["valid"]),
        "errors": sum(1 for r in rows if r["error"] and not r["error"].startswith("parse:")),
    }


async def _preflight_s(base_url: str, repeat: int) -> list[float]:
    config = _config(base_url, 1, "P1", True, tempfile.gettempdir())
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = await preflight(config.models)
        times.append(round(time.perf_counter() - started, 3))
        assert result.ok, result.problems
    return times


async def main(args: argparse.Namespace) -> None:
    rows = []
    with llama_server(args.slots, threads=args.threads) as base_url:
        preflight_times = await _preflight_s(base_url, args.repeat)
        for variant in args.variants:
            for merge in (True, False):
                row = await _one(base_url, args.agents, variant, merge)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(
        json.dumps(
            {"preflight_s_median": statistics.median(preflight_times), "runs": preflight_times}
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--slots", type=int, default=4, help="llama.cpp n_parallel")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp CPU threads")
    parser.add_argument("--variants", nargs="+", default=["P1", "P3"])
    parser.add_argument("--repeat", type=int, default=5, help="preflight timings")
    asyncio.run(main(parser.parse_args()))
