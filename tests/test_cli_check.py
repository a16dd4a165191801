"""``megasim check`` and the preflight of ``megasim run``, against the fake server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from megasim.cli import app
from megasim.model.fake_quirks import Quirks
from megasim.model.fake_server import FakeServer

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def _openai(server: FakeServer, **settings: Any) -> dict[str, Any]:
    model = {"backend": "openai", "base_url": server.base_url, "model": "fake-model"}
    return {"srv": {**model, "api_key_env": None, **settings}}


def test_check_prints_a_table_and_writes_the_report(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    with FakeServer(quirks=Quirks(max_n=4)) as server:
        cfg = write_config(models=_openai(server))
        code, output = _cli(
            "check", str(cfg), "-o", str(tmp_path / "pf.json"), "--throughput", "--seconds", "0.2"
        )
    assert code == 0, output
    assert "model srv (fake-model)" in output
    assert server.base_url in output
    assert "n <= 4, the server's limit (asked 64)" in output
    assert "calls/s" in output
    report = json.loads((tmp_path / "pf.json").read_text())
    assert report["ok"] is True
    (endpoint,) = report["endpoints"]
    assert endpoint["max_n"] == 4
    assert endpoint["throughput"]["calls_per_s"] > 0


def test_check_fails_naming_endpoint_and_problem(write_config: Callable[..., Path]) -> None:
    with FakeServer(model="served", quirks=Quirks(strict_model=True)) as server:
        cfg = write_config(models=_openai(server, model="typo"))
        code, output = _cli("check", str(cfg))
    assert code == 1
    assert f"error: model 'srv' at {server.base_url}: model: 'typo' not served: HTTP 404" in output


def test_wrong_key_fails_preflight_clearly(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEGASIM_TEST_KEY", "not-the-token")
    with FakeServer(token="the-token") as server:
        cfg = write_config(models=_openai(server, api_key_env="MEGASIM_TEST_KEY"))
        code, output = _cli("check", str(cfg))
        run_code, run_output = _cli("run", str(cfg), "--run-id", "r", "--quiet")
    assert code == 1
    assert f"model 'srv' at {server.base_url}: auth: key refused: HTTP 401" in output
    assert run_code == 1
    assert "auth: key refused: HTTP 401" in run_output
    assert "--no-preflight" in run_output
    assert not (cfg.parent / "runs" / "r").exists()  # nothing started, nothing billed


def test_missing_key_variable_fails_at_start_with_or_without_preflight(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEGASIM_NO_SUCH_KEY", raising=False)
    with FakeServer() as server:
        cfg = write_config(models=_openai(server, api_key_env="MEGASIM_NO_SUCH_KEY"))
        code, output = _cli("run", str(cfg), "--run-id", "a", "--quiet")
        bare_code, bare_output = _cli("run", str(cfg), "--run-id", "b", "--quiet", "--no-preflight")
        assert server.counts["requests"] == 0
    assert code == bare_code == 1
    assert "MEGASIM_NO_SUCH_KEY (api_key_env) is not set" in output
    assert "model setup failed" in bare_output
    assert "MEGASIM_NO_SUCH_KEY (api_key_env) is not set" in bare_output


def test_run_keeps_the_preflight_report_and_no_preflight_skips_it(
    write_config: Callable[..., Path],
) -> None:
    with FakeServer(quirks=Quirks(max_n=4)) as server:
        cfg = write_config(models=_openai(server))
        code, output = _cli("run", str(cfg), "--run-id", "with", "--quiet")
        assert code == 0, output
        calls_with = server.counts["requests"]
        code, output = _cli("run", str(cfg), "--run-id", "without", "--quiet", "--no-preflight")
        assert code == 0, output
    runs = cfg.parent / "runs"
    report = json.loads((runs / "with" / "preflight.json").read_text())
    assert report["ok"] is True
    assert report["endpoints"][0]["max_n"] == 4
    assert report["elapsed_s"] < 2.0
    assert not (runs / "without" / "preflight.json").exists()
    assert calls_with > server.counts["requests"] - calls_with  # the probes made calls


def test_check_without_openai_models_and_with_a_bad_config(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    code, output = _cli("check", str(write_config()))
    assert code == 0
    assert "no openai models to check" in output
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: -1\n")
    code, output = _cli("check", str(bad))
    assert code == 2
    assert "bad.yaml" in output
