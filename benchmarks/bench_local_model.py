"""Decisions per second on the bundled model (SmolLM2-135M via llama.cpp, this machine).

naive:   one agent at a time, one llama.cpp slot, each call waits for the previous one
megasim: one round of the game through the platform: parallel slots, identical prompts
         merged into calls with ``n`` samples, llama.cpp prompt-prefix reuse

    python benchmarks/bench_local_model.py --agents 64 --variant P1 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from megasim.config import SimulationConfig
from megasim.env.guess_game import GuessObservation
from megasim.model.base import ChatRequest
from megasim.model.local import LocalModel
from megasim.model.parsing import parse_guess
from megasim.run import run_simulation
from megasim.scenarios.guess_prompts import DEFAULT_MAX_TOKENS, build_prompt


async def naive(agents: int, variant: str) -> tuple[float, int]:
    model = LocalModel(name="naive", parallel=1)
    obs = GuessObservation(1, 1, 0, agents, None, 2 / 3, 0.0, 0.0, 100.0)
    prompt = build_prompt(variant, obs, DEFAULT_MAX_TOKENS[variant])
    valid = 0
    started = time.perf_counter()
    for agent in range(agents):
        request = ChatRequest(prompt.messages, prompt.max_tokens, None, agent, prompt.schema)
        response = await model.complete(request)
        valid += parse_guess(response.text).valid
    elapsed = time.perf_counter() - started
    await model.aclose()
    return agents / elapsed, valid


async def platform(agents: int, variant: str, parallel: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        config = SimulationConfig.model_validate(
            {
                "seed": 1,
                "rounds": 1,
                "game": {"repair": False},  # same work as the naive loop: one call each
                "population": {
                    "size": agents,
                    "attributes": {"prompt_variant": {"dist": "constant", "value": variant}},
                },
                "models": {"smollm2": {"backend": "local", "parallel": parallel}},
                "out_dir": tmp,
            }
        )
        result = await run_simulation(config, run_id="bench")
        step = result.steps[0]
        return agents / step.metrics["wall_s"], int(step.outcome["valid"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--variant", default="P1")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"naive": [], "megasim": []}
    for _ in range(args.repeat):
        rate, valid = asyncio.run(naive(args.agents, args.variant))
        results["naive"].append(rate)
        print(f"naive    {rate:6.2f} decisions/s  ({valid}/{args.agents} valid)")
        rate, valid = asyncio.run(platform(args.agents, args.variant, args.parallel))
        results["megasim"].append(rate)
        print(f"megasim  {rate:6.2f} decisions/s  ({valid}/{args.agents} valid)")
    naive_rate = statistics.median(results["naive"])
    megasim_rate = statistics.median(results["megasim"])
    print(
        f"median: naive {naive_rate:.2f}/s, megasim {megasim_rate:.2f}/s, "
        f"ratio {megasim_rate / naive_rate:.1f}x ({args.agents} agents, {args.variant})"
    )


if __name__ == "__main__":
    main()
