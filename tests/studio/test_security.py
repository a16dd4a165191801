"""A token on every route, page, asset and the live channel; no path escapes the runs folder."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from megasim.studio.server import free_port, is_loopback, resolve_token
from tests.studio.conftest import StudioServer

TOKEN = "s3cret-token-for-tests"


def _routes(server: StudioServer) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI schema (path parameters filled in), pages and assets."""
    schema = httpx.get(f"{server.url}/api/openapi.json", headers=_auth()).json()
    found = []
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{agent_id\}", "1", path.replace("{run_id}", "done1"))
        concrete = re.sub(r"\{[a-z_]+\}", "x", concrete)
        found += [(method.upper(), concrete) for method in operations]
    pages = [
        "/",
        "/runs/done1",
        "/runs/done1/agents",
        "/runs/done1/agents/1",
        "/runs/done1/ask",
        "/runs/done1/cluster",
        "/runs/done1/report",
        "/static/studio.css",
        "/static/pages/run.html",
        "/static/run.js",
        "/vendor/plotly.min.js",
        "/api/openapi.json",
    ]
    return found + [("GET", p) for p in pages]


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_needs_the_token(runs_copy: Path) -> None:
    with StudioServer(runs_copy, token=TOKEN) as server:
        routes = _routes(server)
        assert len(routes) > 25
        for method, path in routes:
            for headers in ({}, _auth("wrong"), {"Cookie": "megasim_token=wrong"}):
                response = httpx.request(method, server.url + path, headers=headers, timeout=10)
                assert response.status_code == 401, (method, path, headers)
        assert httpx.get(f"{server.url}/api/runs/done1/live?token=nope").status_code == 401
        ok = httpx.get(f"{server.url}/api/runs", headers=_auth())
        assert ok.status_code == 200
        assert ok.json()[0]["run_id"] == "done1"
        with httpx.stream("GET", f"{server.url}/api/runs/done1/live", headers=_auth()) as live:
            assert live.status_code == 200
        page = httpx.get(f"{server.url}/?token={TOKEN}")  # a page opened with the token
        assert page.status_code == 200
        assert "megasim_token" in page.headers["set-cookie"]
        assert "HttpOnly" in page.headers["set-cookie"]
        with_cookie = httpx.get(f"{server.url}/api/runs", cookies={"megasim_token": TOKEN})
        assert with_cookie.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/..%2F..%2Fetc%2Fpasswd",
        "/api/runs/..",
        "/api/runs/%2Fetc",
        "/api/runs/done1%2F..%2F..%2Fsecret/steps",
        "/api/runs/done1/report/..%2Fconfig.yaml",
        "/api/runs/done1/report/%2E%2E%2Fsecret.txt",
        "/static/..%2F..%2Fsecret.txt",
        "/static/../../secret.txt",
        "/runs/..%2Fsecret.txt",
        "/runs/done1/..%2F..%2Fsecret.txt",
    ],
)
def test_path_traversal_reads_nothing(runs_copy: Path, path: str) -> None:
    secret = runs_copy.parent / "secret.txt"
    secret.write_text("TOP SECRET")
    (runs_copy / "done1" / "report").mkdir(exist_ok=True)
    with StudioServer(runs_copy) as server:
        response = httpx.get(server.url + path)
    assert 400 <= response.status_code < 500
    assert "TOP SECRET" not in response.text
    assert "root:" not in response.text


def test_token_in_force_off_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("my-host")
    assert resolve_token("127.0.0.1", None) == (None, False)
    token, generated = resolve_token("0.0.0.0", None)
    assert generated
    assert token
    assert len(token) >= 24
    assert resolve_token("0.0.0.0", "given") == ("given", False)


def test_cli_on_all_addresses_prints_and_enforces_a_generated_token(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "megasim",
            "studio",
            "--runs",
            str(tmp_path),
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        token = line.rsplit(" ", 1)[-1].strip()
        assert "generated access token" in line
        assert len(token) >= 24
        url = f"http://127.0.0.1:{port}/api/runs"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(url)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert response.status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_loopback_studio_refuses_foreign_host_names(runs_copy: Path) -> None:
    """Without a token the studio trusts only loopback Host headers (DNS rebinding)."""
    with StudioServer(runs_copy) as server:
        evil = httpx.get(f"{server.url}/api/runs", headers={"Host": "evil.example:8765"})
        assert evil.status_code == 400
        assert httpx.get(f"{server.url}/api/runs").status_code == 200
