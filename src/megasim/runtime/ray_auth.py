"""Token authentication for a Ray that megasim starts itself.

Ray's protocol runs code sent to it, so anyone who can reach an unauthenticated Ray can
run code as the user. When megasim starts a local Ray (``runtime.address`` unset), it turns
on Ray's token authentication (Ray 2.52+) unless ``RAY_AUTH_MODE`` is already set (set it
to ``disabled`` to opt out). Without a configured token (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) it makes a random one for this process
only: it is passed to Ray's processes in the environment and never written to disk, so
nobody else can join that Ray. Joining a cluster (``runtime.address``) changes nothing:
the cluster's own settings and token apply (see docs/architecture.md).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MODE = "RAY_AUTH_MODE"
TOKEN = "RAY_AUTH_TOKEN"
TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"

Saved = dict[str, str | None]


def _reload_ray_config() -> None:
    """Ray reads RAY_AUTH_MODE when it is imported; make it read the environment again
    (what Ray itself does when it turns token auth on, ray 2.52-2.60)."""
    from ray._raylet import Config  # type: ignore[attr-defined]  # (no stub)

    Config.initialize("")


def token_configured(home: Path | None = None) -> bool:
    """Whether Ray would find a token without us: environment, token file, default file."""
    if os.environ.get(TOKEN) or os.environ.get(TOKEN_PATH):
        return True
    return ((home or Path.home()) / ".ray" / "auth_token").is_file()


def enable_for_local_ray() -> Saved:
    """Turn token auth on for the Ray about to be started; returns what to restore.

    Returns ``{}`` (nothing changed) when the user chose a mode with RAY_AUTH_MODE."""
    if MODE in os.environ:
        return {}
    saved: Saved = {MODE: None, TOKEN: os.environ.get(TOKEN)}
    os.environ[MODE] = "token"
    if not token_configured():
        os.environ[TOKEN] = secrets.token_hex(32)
    _reload_ray_config()
    return saved


def restore(saved: Saved) -> None:
    """Undo ``enable_for_local_ray`` after ray.shutdown(), so that a later connection from
    this process (e.g. to an unauthenticated cluster) is not sent a token it never had."""
    if not saved:
        return
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _reload_ray_config()
