"""The issue's failing run, against the fake server's llama.cpp and Ollama modes: a
default ``backend: openai`` config with merging on loses no decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from megasim.model.fake_quirks import Quirks
from megasim.model.fake_server import FakeServer
from megasim.run import run_simulation
from tests.model.game_runs import decisions, game_config, model_errors


@pytest.mark.parametrize(
    ("quirks", "max_n"),
    [(Quirks(max_n=4), 4), (Quirks(ignore_n=True), 1), (Quirks(), 64)],
    ids=["llama.cpp-n4", "ollama-ignores-n", "accepts-n"],
)
async def test_merged_game_loses_no_decision(tmp_path: Path, quirks: Quirks, max_n: int) -> None:
    rejected_by_step: list[int] = []
    async with FakeServer(quirks=quirks, latency_s=0.01) as server:
        result = await run_simulation(
            game_config(tmp_path, server.base_url),
            on_step=lambda _: rejected_by_step.append(server.counts["rejected"]),
            run_id="r",
        )
    rows = decisions(result)
    assert len(rows) == 80
    assert model_errors(rows) == []
    assert all(r["valid"] for r in rows)  # the fake server always answers in range
    layer = result.steps[-1].metrics["model_layer"]["srv"]
    (endpoint,) = layer["endpoints"].values()
    assert endpoint["features"]["max_n"] == max_n
    assert layer["merge"]["merged"] > 0 or max_n == 1
    # at most one rejected call per prompt (P1, P3) in flight before the limit was
    # learned; none after: the learned limit is kept for the rest of the run
    assert rejected_by_step[0] <= 2
    assert rejected_by_step[1] == rejected_by_step[0]
