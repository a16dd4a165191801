"""Hand-written population statistics vs scipy and datasketch (docs/benchmarks.md).

Why the population code keeps its own chi-square tail, truncated-normal moments and
MinHash index: this measures both on realistic sizes. scipy and datasketch are not
dependencies; install them for the measurement only:

    .venv/bin/pip install scipy datasketch
    .venv/bin/python benchmarks/bench_population_libs.py 20000
"""

from __future__ import annotations

import argparse
import importlib
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from megasim.population._stats import chi2_sf, truncated_normal_moments
from megasim.population.backgrounds_dedup import NearDuplicateIndex, normalise


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Mean seconds per call."""
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def chi_square(stats: Any) -> None:
    rng = np.random.default_rng(0)
    pairs = [(float(rng.gamma(3, 4)), int(rng.integers(1, 60))) for _ in range(1000)]
    mine = timed(lambda: [chi2_sf(x, k) for x, k in pairs], 5)
    scalar = timed(lambda: [stats.chi2.sf(x, k) for x, k in pairs], 5)
    diff = max(abs(chi2_sf(x, k) - float(stats.chi2.sf(x, k))) for x, k in pairs)
    print(f"chi2_sf, 1000 calls: hand {mine * 1e3:.2f} ms, scipy {scalar * 1e3:.2f} ms")
    print(f"  max |difference| {diff:.1e}")


def moments(stats: Any, integrate: Any) -> None:
    normal = {"mean": 40.0, "std": 15.0, "lo": 18.0, "hi": 90.0}
    log = {"mean": 10.5, "std": 0.8, "lo": math.log(5000), "hi": math.log(2e6)}

    def scipy_normal() -> tuple[float, float]:
        a = (normal["lo"] - normal["mean"]) / normal["std"]
        b = (normal["hi"] - normal["mean"]) / normal["std"]
        dist = stats.truncnorm(a, b, loc=normal["mean"], scale=normal["std"])
        return float(dist.mean()), float(dist.std())

    def scipy_lognormal() -> tuple[float, float]:
        a = (log["lo"] - log["mean"]) / log["std"]
        b = (log["hi"] - log["mean"]) / log["std"]
        dist = stats.truncnorm(a, b, loc=log["mean"], scale=log["std"])
        first = integrate.quad(lambda x: math.exp(x) * dist.pdf(x), log["lo"], log["hi"])[0]
        second = integrate.quad(lambda x: math.exp(2 * x) * dist.pdf(x), log["lo"], log["hi"])[0]
        return float(first), math.sqrt(max(second - first * first, 0.0))

    def scipy_integer() -> tuple[float, float]:
        k = np.arange(18, 91)
        p = stats.norm.cdf(k + 0.5, 40, 15) - stats.norm.cdf(k - 0.5, 40, 15)
        p /= p.sum()
        mean = float((p * k).sum())
        return mean, math.sqrt(float((p * (k - mean) ** 2).sum()))

    cases: list[tuple[str, Callable[[], tuple[float, float]], Callable[[], object]]] = [
        ("normal", lambda: truncated_normal_moments(40.0, 15.0, 18.0, 90.0), scipy_normal),
        (
            "lognormal",
            lambda: truncated_normal_moments(10.5, 0.8, log["lo"], log["hi"], log=True),
            scipy_lognormal,
        ),
        (
            "integer",
            lambda: truncated_normal_moments(40.0, 15.0, 17.5, 90.5, integer=True),
            scipy_integer,
        ),
    ]
    for label, hand, library in cases:
        mine, theirs = timed(hand, 20), timed(library, 20)
        print(f"moments {label}: hand {mine * 1e3:.2f} ms, scipy {theirs * 1e3:.2f} ms")
        print(f"  hand {hand()} vs scipy {library()}")


def dedup(datasketch: Any, stories: int) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    texts: list[str] = []
    for i in range(stories):
        if i > 10 and rng.random() < 0.1:  # a near copy of an earlier story
            words = texts[rng.randrange(i)].split()
            words[rng.randrange(60)] = "changed"
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(vocab, k=60)))
    started = time.perf_counter()
    index = NearDuplicateIndex()
    found = sum(index.add_unless_duplicate(t, i) is not None for i, t in enumerate(texts))
    mine = time.perf_counter() - started
    started = time.perf_counter()
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=120, params=(20, 6))
    candidates = 0
    for i, text in enumerate(texts):
        words = normalise(text)
        grams = {" ".join(words[j : j + 3]) for j in range(len(words) - 2)}
        signature = datasketch.MinHash(num_perm=120, seed=1)
        signature.update_batch([g.encode() for g in grams])
        if lsh.query(signature):
            candidates += 1  # candidates only: an exact Jaccard check would follow
        else:
            lsh.insert(i, signature)
    theirs = time.perf_counter() - started
    print(f"dedup of {stories} stories: hand {mine:.2f} s ({found} duplicates)")
    print(f"  datasketch {theirs:.2f} s ({candidates} candidates, before an exact check)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stories", type=int, nargs="?", default=20_000)
    args = parser.parse_args()
    try:
        stats = importlib.import_module("scipy.stats")
        integrate = importlib.import_module("scipy.integrate")
        datasketch = importlib.import_module("datasketch")
    except ModuleNotFoundError as exc:
        raise SystemExit(f"{exc.name} is needed for this measurement: pip install it") from None
    chi_square(stats)
    moments(stats, integrate)
    dedup(datasketch, args.stories)


if __name__ == "__main__":
    main()
