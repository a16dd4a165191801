"""Serving the studio: loopback by default; any other address only with a token."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import time
from pathlib import Path

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: treat as reachable from elsewhere


def resolve_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """(token in force, whether it was generated). Off loopback a token is always in force."""
    if token:
        return token, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def serve(runs: Path, host: str, port: int, token: str | None) -> None:
    from megasim.studio.app import create_app

    uvicorn.run(create_app(runs, token), host=host, port=port, log_level="warning")


class StudioThread:
    """A studio served from a thread of this process (tests, benchmarks, notebooks):
    ``with StudioThread(runs) as studio: httpx.get(studio.url + "/api/runs")``."""

    def __init__(
        self, runs: Path, token: str | None = None, port: int = 0, live_interval_s: float = 1.0
    ) -> None:
        from megasim.studio.app import create_app

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(runs, token, live_interval_s=live_interval_s)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> StudioThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the studio did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
