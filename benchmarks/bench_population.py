"""Sampling a population from a spec: wall time for N agents (vectorised; goal 1M < 3 s).

python benchmarks/bench_population.py --spec examples/populations/census.yaml --agents 1000000
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from megasim.population import check_marginals, load_population_spec, sample_population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", type=Path, default=Path("examples/populations/census.yaml"))
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spec = load_population_spec(args.spec)
    defaults = {"model": "smollm2", "prompt_variant": "P1"}
    sample_s, check_s = [], []
    for seed in range(args.repeat):
        started = time.perf_counter()
        table = sample_population(spec, seed=seed, size=args.agents, defaults=defaults)
        sample_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        checks = check_marginals(table, spec)
        check_s.append(time.perf_counter() - started)
    print(f"{args.agents:,} agents, {table.num_columns} columns, spec {args.spec}")
    print(f"  sample  median {statistics.median(sample_s):.3f} s  runs {sample_s}")
    print(f"  checks  median {statistics.median(check_s):.3f} s  ({len(checks)} checks)")


if __name__ == "__main__":
    main()
