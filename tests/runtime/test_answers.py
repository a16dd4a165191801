"""Answer summaries reduced by shards: exact counts, combinable, sharding-independent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from megasim.config import load_config
from megasim.run import run_simulation
from megasim.runtime.answers import (
    ANSWER_BINS,
    combine_answers,
    histogram_quantile,
    key_stats,
    summarize_answers,
)


def _table(values: list[float | None], models: list[str]) -> pa.Table:
    return pa.table(
        {
            "value": pa.array(values, pa.float64()),
            "valid": [v is not None for v in values],
            "model": models,
            "prompt_variant": ["P1"] * len(values),
            "group": [0] * len(values),
        }
    )


def test_summary_counts_sums_and_quantiles() -> None:
    rng = np.random.default_rng(3)
    values = [float(v) for v in rng.uniform(0, 100, 4000)]
    table = _table([*values, None], ["a"] * 2000 + ["b"] * 2001)
    halves = [
        summarize_answers(table.slice(0, 2500), (0, 100)),
        summarize_answers(table.slice(2500), (0, 100)),
    ]
    combined = combine_answers(halves)
    whole = summarize_answers(table, (0, 100))
    assert combined["counts"] == whole["counts"]
    assert len(whole["counts"]) == ANSWER_BINS
    assert sum(whole["counts"]) == 4000  # the invalid answer is not binned
    median = histogram_quantile(whole, 0.5)
    assert median is not None
    assert abs(median - float(np.median(values))) <= 100 / ANSWER_BINS
    b = key_stats(combined["by"]["model"]["b"])
    assert b["n"] == 2001
    assert b["valid"] == 2000
    assert abs(float(b["mean"]) - float(np.mean(values[2000:]))) < 1e-9  # type: ignore[arg-type]
    assert abs(float(b["std"]) - float(np.std(values[2000:]))) < 1e-6  # type: ignore[arg-type]


def test_metrics_answers_do_not_depend_on_sharding(write_config: Callable[..., Path]) -> None:
    models = {"s": {"backend": "surrogate"}}
    one = load_config(write_config("one.yaml", models=models, runtime={"shards": 1}))
    three = load_config(write_config("three.yaml", models=models, runtime={"shards": 3}))
    a = asyncio.run(run_simulation(one, run_id="one"))
    b = asyncio.run(run_simulation(three, run_id="three"))
    for x, y in zip(a.steps, b.steps, strict=True):
        assert x.metrics["answers"]["counts"] == y.metrics["answers"]["counts"]
        by_x, by_y = x.metrics["answers"]["by"], y.metrics["answers"]["by"]
        assert by_x.keys() == by_y.keys()
        for column in by_x:
            for key, sums in by_x[column].items():
                assert np.allclose(sums, by_y[column][key])
