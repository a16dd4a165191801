"""The guess game, merging on, against llama.cpp's real server with 1, 2 and 4 slots
(the issue: every decision failed with 'Field n: Value must be between 1 <= value <= 4').
Small on purpose (2 shared cores): 8 P1 agents, one round, answers capped at 24 tokens;
the merged prompt asks for n = 8, above every slot count."""

from __future__ import annotations

from pathlib import Path

import pytest

from megasim.model.llama_server import llama_server
from megasim.model.preflight import preflight
from megasim.run import run_simulation
from tests.model.game_runs import decisions, game_config, model_errors

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("n_parallel", [1, 2, 4])
async def test_merged_game_and_preflight_against_llama_server(
    tmp_path: Path, n_parallel: int
) -> None:
    pytest.importorskip("xllamacpp")
    with llama_server(n_parallel) as base_url:
        config = game_config(
            tmp_path, base_url, agents=8, rounds=1, variants=("P1",), max_tokens=24
        )
        checked = await preflight(config.models)
        result = await run_simulation(config, run_id="r")
    # preflight: the table a user sees for this server
    (report,) = checked.endpoints
    assert checked.ok, checked.problems
    assert report.max_n == n_parallel
    assert report.checks["n"].status == "ok"
    assert report.checks["json_schema"].status == "ok"
    assert report.checks["seed"].status == "ok"
    assert report.checks["max_tokens"].status == "ok"
    assert report.checks["model"].status == "warn"  # llama.cpp lists its file, answers any name
    assert report.latency_s is not None
    # the run: every decision answered (valid, or invalid with its parse reason)
    rows = decisions(result)
    assert len(rows) == 8
    assert model_errors(rows) == []
    assert all(r["valid"] or r["error"].startswith("parse:") for r in rows)
    layer = result.steps[-1].metrics["model_layer"]["srv"]
    (endpoint,) = layer["endpoints"].values()
    assert endpoint["features"]["max_n"] == n_parallel
    assert layer["requests_failed"] == 0
    merge = layer["merge"]
    assert merge["merged"] >= 7  # the 8 identical prompts went as one merged call
    # (repair calls for unusable answers have their own prompts and go on their own)
