"""The run directory as a bus between a running driver and anyone watching or steering it.

The driver rewrites ``status.json`` about once a second (progress inside the step, shard
health, model calls in flight); commands (pause, resume, stop, restart a shard) arrive as
small JSON files in ``control/`` that the driver polls between steps and while it waits.
Why files: the studio, the CLI and the driver need no new port or connection between
them, a studio on another machine works over the shared run directory, and either side
can come and go without losing anything. Everything is JSON: never pickle.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
CONTROL_DIR = "control"
ACTIONS: tuple[str, ...] = ("pause", "resume", "stop", "restart_shard")
HEARTBEAT_S = 1.0
# A status older than this, with no "done"/"failed"/"stopped" event, means the driver died.
STALE_AFTER_S = 15.0


def _atomic_json(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, separators=(",", ":"), default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_status(run_path: Path, status: Mapping[str, Any]) -> None:
    """Replace the run's live status (a reader never sees a half-written file)."""
    _atomic_json(run_path / STATUS_FILE, status)


def read_status(run_path: Path) -> dict[str, Any] | None:
    """The last status the driver wrote, or None (no driver yet, or unreadable)."""
    try:
        loaded = json.loads((run_path / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


@dataclass(frozen=True, slots=True)
class Command:
    """One request to a running driver, as posted in ``control/``."""

    id: str
    action: str
    origin: str
    time: float
    args: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "origin": self.origin,
            "time": self.time,
            "args": self.args,
        }


def post_command(run_path: Path, action: str, origin: str, **args: Any) -> Command:
    """Queue a command for the run's driver; it acts on it within about a second."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {list(ACTIONS)}")
    folder = run_path / CONTROL_DIR
    folder.mkdir(exist_ok=True)
    now = time.time()
    command = Command(f"{time.time_ns():020d}-{secrets.token_hex(4)}", action, origin, now, args)
    _atomic_json(folder / f"{command.id}.json", command.to_dict())
    return command


def take_commands(run_path: Path) -> list[Command]:
    """Pending commands in the order they were posted; each is removed once taken."""
    folder = run_path / CONTROL_DIR
    if not folder.is_dir():
        return []
    taken: list[Command] = []
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            command = Command(
                str(raw["id"]),
                str(raw["action"]),
                str(raw.get("origin", "unknown")),
                float(raw.get("time", 0.0)),
                dict(raw.get("args") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError):
            command = None  # a malformed file: dropped, never retried forever
        path.unlink(missing_ok=True)
        if command is not None:
            taken.append(command)
    return taken
