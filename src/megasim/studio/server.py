"""Serving the studio: loopback by default; any other address only with a token."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

import uvicorn


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
