"""One p50 latency per round: the report and metrics.jsonl compute it the same way.

The canonical definition is the run's own record (``ModelStepStats.latency_quantile_ms``:
nearest rank over the decisions' ``latency_ms``, the upper edge of its log bin), because
the driver only ever sees the shards' histograms. The model layer's ``latency_p50_s``
measures something else on purpose: HTTP calls (a merged call serves many decisions, a
retried decision makes several calls), so it is not compared here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tests.model.game_runs import game_config

from megasim.model.fake_server import FakeServer
from megasim.report.summary import round_table
from megasim.run import run_simulation
from megasim.runtime.base import LATENCY_EDGES_MS, ModelStepStats


async def test_report_and_metrics_give_one_p50_per_round(tmp_path: Path) -> None:
    async with FakeServer(latency_s=0.02, slots=4) as server:
        config = game_config(tmp_path, server.base_url, agents=30, rounds=2, merge=False)
        result = await run_simulation(config)
    run = result.run_dir
    metrics = {m["step"]: m["models"]["srv"]["latency_p50_ms"] for m in run.read_metrics()}
    decisions = run.read_decisions()
    steps = decisions.column("step").to_numpy()
    latency = decisions.column("latency_ms").to_numpy()
    report = round_table(run.path)
    assert [r.step for r in report] == sorted(metrics) == [1, 2]
    for row in report:
        hist = np.bincount(
            np.searchsorted(LATENCY_EDGES_MS, latency[steps == row.step]),
            minlength=len(LATENCY_EDGES_MS) + 1,
        )
        from_rows = ModelStepStats(latency_hist=hist.tolist()).latency_quantile_ms(0.5)
        assert row.latency_p50_ms == metrics[row.step] == from_rows
        assert row.latency_p50_ms is not None
        assert row.latency_p50_ms >= 20  # the server takes 20 ms a call
