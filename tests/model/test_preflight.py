"""Preflight probes against the fake server's modes: what each check reports."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from megasim.model.config import OpenAIModelConfig
from megasim.model.fake_quirks import Quirks
from megasim.model.fake_server import FakeServer
from megasim.model.preflight import PreflightResult, preflight, probe_endpoint, write_report


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _statuses(report: Any) -> dict[str, str]:
    return {name: check.status for name, check in report.checks.items()}


async def test_a_healthy_server_passes_every_check() -> None:
    async with FakeServer(model="served") as server:
        report = await probe_endpoint("m", "served", server.base_url, None, max_n=8)
    assert _statuses(report) == {
        "key": "ok",
        "reachable": "ok",
        "auth": "ok",
        "model": "ok",
        "max_tokens": "ok",
        "n": "ok",
        "json_schema": "ok",
        "seed": "ok",
    }
    assert report.max_n == 8
    assert report.latency_s is not None
    assert report.latency_s > 0
    assert not report.failed


async def test_llama_cpp_like_limit_and_any_model_name() -> None:
    async with FakeServer(model="/models/x.gguf", quirks=Quirks(max_n=4)) as server:
        report = await probe_endpoint("m", "smollm2", server.base_url, None, max_n=64)
    assert report.max_n == 4
    assert report.checks["n"].status == "ok"
    assert "server's limit" in report.checks["n"].detail
    assert report.checks["model"].status == "warn"  # not listed, but answered
    assert not report.failed


async def test_ollama_like_server_ignoring_fields_gets_warnings_not_failures() -> None:
    quirks = Quirks(ignore_n=True, seed="ignore", response_format="ignore")
    async with FakeServer(quirks=quirks) as server:
        report = await probe_endpoint("m", "fake-model", server.base_url, None)
    assert report.max_n == 1
    statuses = _statuses(report)
    assert statuses["n"] == statuses["seed"] == statuses["json_schema"] == "warn"
    assert "ignored" in report.checks["seed"].detail
    assert "ignored" in report.checks["json_schema"].detail
    assert not report.failed


async def test_rejected_schema_reports_the_fallback() -> None:
    async with FakeServer(quirks=Quirks(response_format="reject_schema")) as server:
        report = await probe_endpoint("m", "fake-model", server.base_url, None)
    assert report.checks["json_schema"].status == "warn"
    assert "json honoured, json_schema not" in report.checks["json_schema"].detail


async def test_n_limit_without_a_number_is_searched() -> None:
    async with FakeServer(quirks=Quirks(max_n=5, n_limit_in_message=False)) as server:
        report = await probe_endpoint("m", "fake-model", server.base_url, None, max_n=64)
    assert report.max_n == 4  # 64 -> 32 -> 16 -> 8 -> 4: the largest power-of-two step taken


async def test_unknown_model_name_fails_naming_the_served_ones() -> None:
    async with FakeServer(model="qwen", quirks=Quirks(strict_model=True)) as server:
        report = await probe_endpoint("m", "qwen-typo", server.base_url, None)
    assert report.checks["model"].status == "fail"
    assert "'qwen-typo' not served: HTTP 404" in report.checks["model"].detail
    assert "served: qwen" in report.checks["model"].detail


async def test_wrong_key_fails_at_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEGASIM_TEST_KEY", "wrong")
    async with FakeServer(token="right") as server:
        report = await probe_endpoint("m", "fake-model", server.base_url, "MEGASIM_TEST_KEY")
        assert server.counts["unauthorized"] >= 1
    assert report.failed == ["auth: key refused: HTTP 401: missing or wrong bearer token"]
    monkeypatch.setenv("MEGASIM_TEST_KEY", "right")
    async with FakeServer(token="right") as server:
        good = await probe_endpoint("m", "fake-model", server.base_url, "MEGASIM_TEST_KEY")
    assert not good.failed
    assert good.checks["key"].detail == "from $MEGASIM_TEST_KEY"


async def test_missing_key_variable_fails_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEGASIM_NO_SUCH_KEY", raising=False)
    async with FakeServer() as server:
        report = await probe_endpoint("m", "fake-model", server.base_url, "MEGASIM_NO_SUCH_KEY")
        assert server.counts["requests"] == 0
    assert report.checks["key"].status == "fail"
    assert "MEGASIM_NO_SUCH_KEY" in report.checks["key"].detail
    assert "api_key_env: null" in report.checks["key"].detail


async def test_unreachable_endpoint_fails_unless_the_pool_has_a_working_one(
    tmp_path: Path,
) -> None:
    dead = _closed_port_url()
    async with FakeServer() as server:
        single = OpenAIModelConfig(backend="openai", base_url=dead, model="x", api_key_env=None)
        pool = OpenAIModelConfig(
            backend="openai",
            model="fake-model",
            api_key_env=None,
            endpoints=[{"base_url": dead}, {"base_url": server.base_url}],
        )
        result = await preflight({"single": single, "pool": pool})
    assert isinstance(result, PreflightResult)
    assert not result.ok
    (problem,) = result.problems
    assert problem.startswith(f"model 'single' at {dead}: reachable: cannot connect")
    spared = [r for r in result.endpoints if r.model == "pool" and r.base_url == dead]
    assert spared[0].checks["reachable"].status == "warn"
    write_report(tmp_path / "preflight.json", result.to_json())
    saved = json.loads((tmp_path / "preflight.json").read_text())
    assert saved["ok"] is False
    assert saved["problems"] == result.problems
    assert {e["model"] for e in saved["endpoints"]} == {"single", "pool"}


async def test_throughput_is_measured_on_request() -> None:
    async with FakeServer(latency_s=0.01, slots=4) as server:
        report = await probe_endpoint(
            "m", "fake-model", server.base_url, None, throughput_s=0.3, concurrency=4
        )
    assert report.throughput is not None
    assert report.throughput["concurrency"] == 4
    assert 50 < report.throughput["calls_per_s"] < 500  # 4 slots of 10 ms: at most 400/s
    assert report.throughput["errors"] == 0
