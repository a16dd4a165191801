"""Model-fault campaign (issue 10): the guess game against the fake OpenAI server with 25 %
of requests failing (500, 503, 429 with Retry-After, hung, malformed/truncated bodies).
Every decision is recorded exactly once: valid, or failed with its reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from megasim.model.fake_server import FakeServer
from megasim.run import run_simulation
from tests.model.game_runs import game_config

pytestmark = pytest.mark.slow  # ~20 s: retries back off for real
AGENTS, ROUNDS = 60, 2
FAULTS = {"fail_500": 0.05, "fail_503": 0.04, "fail_429": 0.04, "hang": 0.04, "malformed": 0.04}
FAULTS["truncated"] = 0.04  # a 200 whose body stops halfway, then the connection closes


def check_every_decision_once(rows: list[dict[str, Any]]) -> Counter[str]:
    """One row per (step, agent); valid with a value, or invalid with its reason. Returns
    the reasons by kind."""
    keys = [(r["step"], r["agent_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == AGENTS * ROUNDS, "a decision lost or recorded twice"
    reasons: Counter[str] = Counter()
    for r in rows:
        if r["valid"]:
            assert r["value"] is not None, r
            assert r["error"] is None, r
            reasons["valid"] += 1
        else:
            assert r["error"], f"an invalid decision without its reason: {r}"
            if r["error"].startswith("model:"):
                assert r["raw_text"] is None, r  # no answer: nothing made up
            reasons[r["error"].split(":", 2)[0] + ": " + _kind(r["error"])] += 1
    return reasons


def _kind(error: str) -> str:
    words = ("429", "500", "503", "timed out", "timeout", "JSON", "json", "Connection", "after")
    for word in words:
        if word in error:
            return word
    return error[:40]


@pytest.mark.parametrize(("retries", "merge"), [(3, False), (0, False), (3, True)])
async def test_every_decision_recorded_once_under_25_percent_faults(
    tmp_path: Path, retries: int, merge: bool
) -> None:
    """Without merging every decision is its own call (120 calls, each fault kind seen);
    with merging, identical prompts share calls whose n samples must all be accounted."""
    async with FakeServer(latency_s=0.01, retry_after_s=0.05, rng_seed=4, **FAULTS) as server:
        config = game_config(
            tmp_path,
            server.base_url,
            agents=AGENTS,
            rounds=ROUNDS,
            retries=retries,
            merge=merge,
            timeout_s=0.3,  # a hung request is given up after 0.3 s, then retried
            max_retry_after_s=1.0,
        )
        result = await run_simulation(config)
        counts = dict(server.counts)
    rows = result.run_dir.read_decisions().to_pylist()
    reasons = check_every_decision_once(rows)
    kinds = ("500", "503", "429", "hang", "malformed", "truncated")
    faults = sum(counts.get(k, 0) for k in kinds)
    print(f"\nretries={retries} merge={merge}: server {counts}; decisions {dict(reasons)}")
    if not merge:
        assert all(counts.get(k, 0) > 0 for k in kinds)
        assert 0.15 < faults / counts["requests"] < 0.35, counts  # about a quarter
    failed = sum(n for kind, n in reasons.items() if kind.startswith("model"))
    if retries == 0 and not merge:  # each fault the server sent is one failed decision
        reasons_of = {"500": "500", "503": "503", "429": "429", "malformed": "JSON"}
        reasons_of |= {"hang": "timed out", "truncated": "Connection"}
        for fault, reason in reasons_of.items():
            assert reasons[f"model: {reason}"] == counts[fault], (fault, reasons, counts)
        assert reasons["valid"] == counts["ok"]
    else:
        assert failed <= 0.05 * AGENTS * ROUNDS  # retries recover almost every call
    metrics = result.run_dir.read_metrics()
    assert sum(m["errors"] for m in metrics) == failed
