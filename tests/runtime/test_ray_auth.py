"""Token authentication when megasim starts Ray itself (runtime/ray_auth.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ray")

from megasim.runtime import ray_auth

AUTH_VARS = (ray_auth.MODE, ray_auth.TOKEN, ray_auth.TOKEN_PATH)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """No Ray auth settings, an empty home, and Ray's config reload counted, not done
    (this process may hold a connection to the test cluster)."""
    for name in AUTH_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    reloads: list[int] = []
    monkeypatch.setattr(ray_auth, "_reload_ray_config", lambda: reloads.append(1))
    return reloads


def test_local_ray_gets_token_auth_and_a_private_token(clean_env: list[int]) -> None:
    saved = ray_auth.enable_for_local_ray()
    assert os.environ[ray_auth.MODE] == "token"
    token = os.environ[ray_auth.TOKEN]
    assert len(token) == 64
    assert not (Path.home() / ".ray").exists()  # nothing written to disk
    ray_auth.restore(saved)
    assert not any(name in os.environ for name in AUTH_VARS)
    assert clean_env == [1, 1]  # Ray re-read the environment both times


def test_configured_token_is_used_not_replaced(
    clean_env: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    (Path.home() / ".ray").mkdir()
    (Path.home() / ".ray" / "auth_token").write_text("x" * 64)
    saved = ray_auth.enable_for_local_ray()
    assert os.environ[ray_auth.MODE] == "token"
    assert ray_auth.TOKEN not in os.environ  # Ray reads ~/.ray/auth_token itself
    ray_auth.restore(saved)
    monkeypatch.setenv(ray_auth.TOKEN_PATH, "/somewhere/token")
    assert ray_auth.token_configured()


def test_an_explicit_mode_is_respected(
    clean_env: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ray_auth.MODE, "disabled")  # the documented opt-out
    assert ray_auth.enable_for_local_ray() == {}
    assert os.environ[ray_auth.MODE] == "disabled"
    assert ray_auth.TOKEN not in os.environ
    assert clean_env == []


PROBE = """
import asyncio, json, os, subprocess, sys
import ray
from ray._raylet import AuthenticationMode, get_authentication_mode
from megasim.config import SimulationConfig
from megasim.run import run_simulation

def join(env):
    code = "import ray; ray.init(address=%r); print(ray.get(ray.put(7)))" % address[0]
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    return done.returncode == 0 and done.stdout.strip().endswith("7")

address, seen = [], {}
def on_step(outcome):
    if seen:
        return
    address.append(ray.get_runtime_context().gcs_address)
    seen["token_mode"] = get_authentication_mode() == AuthenticationMode.TOKEN
    bare = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    seen["stranger_joined"] = join(bare)
    seen["token_holder_joined"] = join(dict(os.environ))

data = {"seed": 1, "rounds": 2, "population": {"size": 40, "groups": 2},
        "models": {"s": {"backend": "scripted"}}, "out_dir": sys.argv[1],
        "runtime": {"kind": "ray", "shards": 2, "cpus_per_shard": 0}}
asyncio.run(run_simulation(SimulationConfig.model_validate(data), on_step=on_step))
seen["env_after"] = sorted(k for k in os.environ if k.startswith("RAY_AUTH"))
print(json.dumps(seen))
"""


@pytest.mark.ray
@pytest.mark.slow
def test_ray_started_by_megasim_refuses_clients_without_the_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token: megasim makes its own token
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["token_mode"] is True
    assert seen["stranger_joined"] is False
    assert seen["token_holder_joined"] is True
    assert seen["env_after"] == []  # restored after the run
    assert not (tmp_path / ".ray" / "auth_token").exists()
