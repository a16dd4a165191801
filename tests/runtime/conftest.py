"""Fixtures of the runtime tests: a real two-node Ray cluster, started once per session.

Every Ray test module (test_ray.py and the environments' Ray tests) shares it, so the
cluster's start-up (tens of seconds on two cores) is paid once.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

# Token authentication (Ray's default) for the test cluster. Ray reads these settings when
# it is imported, so they are set before the import; the cluster fixture writes the token.
TEMP_DIR = f"/tmp/msray-{os.getpid()}"  # short: Ray's socket paths have a length limit
TOKEN = Path(f"{TEMP_DIR}-token")
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(TOKEN)


RAY = str(Path(sys.executable).with_name("ray"))
COMMON = ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
# GCS declares a node dead after ~3 missed 1 s health checks (default: ~15-30 s)
FAST_NODE_DEATH = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}
# worker processes' ports: below Linux's ephemeral range (32768+), where free_port()
# picks the others, so they can never overlap; one range of 200 per non-head node
WORKER_PORTS = 20000 + (os.getpid() % 30) * 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_command(address: str, resource: str, worker_ports: int) -> list[str]:
    """``ray start`` for a non-head node with its own ports and a custom resource."""
    return [
        *(RAY, "start", f"--address={address}", *COMMON, f'--resources={{"{resource}": 1}}'),
        *(f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"),
        *(f"--min-worker-port={worker_ports}", f"--max-worker-port={worker_ports + 199}"),
    ]


def ray_processes(temp_dir: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if temp_dir in cmdline:
            found.append(proc)
    return found


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """Head node (resource head_node) + a second node (resource worker_node), token auth."""
    temp_dir, token = TEMP_DIR, TOKEN
    token.write_text(secrets.token_hex(32))
    env = dict(os.environ)
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = [RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}"]
    head += [*COMMON, '--resources={"head_node": 1}', "--include-dashboard=false"]
    head += [f"--system-config={json.dumps(FAST_NODE_DEATH)}"]
    worker = node_command(address, "worker_node", WORKER_PORTS)
    try:
        for command in (head, worker):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        leftovers = ray_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        token.unlink(missing_ok=True)
        assert not leftovers, f"Ray processes left behind: {leftovers}"
