"""RunCatalog: the runs under one folder, their state and summary, read from the files.

The run directory is the single source of truth (``store/bus.py``): nothing is kept
here that a studio restart would lose. Parsed files are cached by (size, mtime), so a
dashboard refreshing every second re-reads only what changed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from megasim.store.bus import STALE_AFTER_S, read_status

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")
STATES = ("running", "paused", "stopping", "done", "failed", "stopped", "interrupted")
_LIFECYCLE_END = {"done": "done", "failed": "failed", "stopped": "stopped"}
STAND_IN_BACKENDS = frozenset({"surrogate", "scripted"})


class RunNotFoundError(LookupError):
    """No run with that id under the catalog's folder (or an id that is not allowed)."""


@dataclass(slots=True)
class _Cached:
    key: tuple[int, int]
    value: Any


class RunCatalog:
    """Every run directory directly under ``root``; ids are validated, paths confined."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[tuple[str, str], _Cached] = {}

    # --- paths ------------------------------------------------------------------------
    def path(self, run_id: str) -> Path:
        """The run's directory; RunNotFoundError for ids with path syntax or outside the root."""
        if not RUN_ID.match(run_id) or run_id in (".", ".."):
            raise RunNotFoundError(run_id)
        path = (self.root / run_id).resolve()
        if path.parent != self.root or not (path / "config.yaml").is_file():
            raise RunNotFoundError(run_id)
        return path

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if RUN_ID.match(p.name) and (p / "config.yaml").is_file()
        )

    # --- cached readers ---------------------------------------------------------------
    def _read(self, path: Path, parse: Any) -> Any:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (stat.st_size, stat.st_mtime_ns)
        cached = self._cache.get((str(path), parse.__name__))
        if cached is not None and cached.key == key:
            return cached.value
        try:
            value = parse(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            return None
        self._cache[(str(path), parse.__name__)] = _Cached(key, value)
        return value

    def config(self, run_id: str) -> dict[str, Any]:
        loaded = self._read(self.path(run_id) / "config.yaml", _yaml)
        return loaded if isinstance(loaded, dict) else {}

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        return self._read(self.path(run_id) / "metrics.jsonl", _jsonl) or []

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return self._read(self.path(run_id) / "events.jsonl", _jsonl) or []

    def status(self, run_id: str) -> dict[str, Any] | None:
        return read_status(self.path(run_id))

    # --- derived ----------------------------------------------------------------------
    def state(self, run_id: str) -> str:
        """running / paused / stopping while a driver beats; else how the last attempt ended."""
        return run_state(self.events(run_id), self.status(run_id))

    def summary(self, run_id: str) -> dict[str, Any]:
        """One row of the runs page."""
        config = self.config(run_id)
        metrics = self.metrics(run_id)
        events = self.events(run_id)
        status = self.status(run_id)
        state = run_state(events, status)
        return _summary(run_id, config, metrics, events, status, state)


def run_state(events: list[dict[str, Any]], status: dict[str, Any] | None) -> str:
    """A run's state from its events and its last heartbeat (see ``RunCatalog.state``)."""
    last_end = None
    for event in events:
        kind = event.get("event")
        if kind in ("start", "resumed"):
            last_end = None
        elif kind in _LIFECYCLE_END:
            last_end = _LIFECYCLE_END[kind]
    if last_end is not None:
        return last_end
    if status is not None and time.time() - float(status.get("time", 0)) < STALE_AFTER_S:
        state = str(status.get("state", "running"))
        return state if state in ("running", "paused", "stopping") else "running"
    if status is None and events and time.time() - float(events[-1]["time"]) < STALE_AFTER_S:
        return "running"  # started moments ago, no heartbeat yet
    return "interrupted"


def _summary(
    run_id: str,
    config: dict[str, Any],
    metrics: list[dict[str, Any]],
    events: list[dict[str, Any]],
    status: dict[str, Any] | None,
    state: str,
) -> dict[str, Any]:
    started = next((e["time"] for e in events if e.get("event") == "start"), None)
    agents = next((e.get("agents") for e in events if e.get("event") == "start"), None)
    last = events[-1]["time"] if events else None
    if state in ("running", "paused", "stopping") and status is not None:
        last = status.get("time", last)
    models = config.get("models") or {}
    used = sorted({name for m in metrics for name in m.get("models", {})})
    return {
        "run_id": run_id,
        "state": state,
        "name": config.get("name"),
        "scenario": config.get("scenario", "guess_two_thirds"),
        "runtime": (config.get("runtime") or {}).get("kind", "local"),
        "shards": (config.get("runtime") or {}).get("shards", 1),
        "agents": agents,
        "steps_done": len(metrics),
        "steps_total": config.get("rounds"),
        "step_in_progress": status.get("step") if status and status.get("in_step") else None,
        "calls": sum(int(m.get("decisions", 0)) for m in metrics),
        "tokens": sum(int(m.get("tokens_in", 0)) + int(m.get("tokens_out", 0)) for m in metrics),
        "errors": sum(int(m.get("errors", 0)) for m in metrics),
        "invalid": sum(int(m.get("invalid", 0)) for m in metrics),
        "started": started,
        "duration_s": round(last - started, 1) if started and last else None,
        "models": [
            {
                "name": name,
                "backend": (models.get(name) or {}).get("backend"),
                "stand_in": (models.get(name) or {}).get("backend") in STAND_IN_BACKENDS,
            }
            for name in used
        ],
    }


def _yaml(text: str) -> Any:
    return yaml.safe_load(text)


def _jsonl(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
    return records
