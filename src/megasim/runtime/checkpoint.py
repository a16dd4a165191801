"""Step checkpoints: agent state, environment state and progress, written atomically.

Layout: ``checkpoints/step=<n>/`` holds ``driver.json`` (step, environment snapshot,
outcomes and metrics so far) and one ``shard=<k>.jsonl`` per shard with the state of
every agent that has any. A checkpoint is built in ``.step=<n>.tmp/`` and renamed when
complete, so a crash leaves either the previous checkpoint or the new one, never half.
Everything is JSON: checkpoints may travel between machines and are never unpickled.
There is no RNG state to save: every draw derives from (run seed, step, agent).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from megasim.store.run_dir import RunDirectory, RunDirectoryError

DRIVER_FILE = "driver.json"
_DRIVER_KEYS = {"step": int, "env": dict, "history": list}


class CheckpointError(RunDirectoryError):
    """A checkpoint file that cannot be read (damaged outside megasim: its writes are
    atomic); the message names the file and how to resume from the one before."""

    def __init__(self, path: Path, problem: str) -> None:
        folder = path.parent
        super().__init__(
            f"{path}: damaged checkpoint: {problem}; move {folder} away to resume from "
            "the checkpoint before it (the steps after that are then rerun)"
        )


KEEP_LAST = 2


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_agent_states(path: Path, states: Iterable[tuple[int, Mapping[str, Any]]]) -> int:
    """One JSON line per agent with state; returns how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for agent_id, state in states:
            handle.write(json.dumps({"agent_id": agent_id, "state": state}) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def read_agent_states(directory: Path) -> dict[int, dict[str, Any]]:
    """States of all agents in a checkpoint, by agent id (independent of the shard layout)."""
    states: dict[int, dict[str, Any]] = {}
    for path in sorted(directory.glob("shard=*.jsonl")):
        number = 0
        try:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):  # noqa: B007 - named in errors
                    if line.strip():
                        record = json.loads(line)
                        states[int(record["agent_id"])] = dict(record["state"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            where = f"line {number}: " if number else ""
            raise CheckpointError(path, f"{where}{type(exc).__name__}: {exc}") from None
    return states


class CheckpointStore:
    """The ``checkpoints/`` folder of a run directory."""

    def __init__(self, run_path: Path) -> None:
        self.root = run_path / "checkpoints"

    def begin(self, step: int) -> Path:
        """A fresh temporary folder for step ``step``'s checkpoint."""
        tmp = self.root / f".step={step}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, step: int, tmp: Path, driver: Mapping[str, Any]) -> Path:
        """Write the driver's part, then atomically publish the folder as ``step=<n>``."""
        driver_path = tmp / DRIVER_FILE
        with driver_path.open("w", encoding="utf-8") as handle:
            json.dump(driver, handle, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(tmp)
        final = self.root / f"step={step}"
        if final.exists():  # a rerun of the same step replaces its checkpoint
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.root)
        self._prune(keep=KEEP_LAST)
        # the step's answers are in its step files and this checkpoint now: the write-ahead
        # log of model answers (model/journal.py) up to it is no longer needed
        RunDirectory(self.root.parent).drop_journals(step)
        return final

    def steps(self) -> list[int]:
        """Steps with a complete checkpoint, ascending."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("step=*"):
            if path.name[5:].isdigit() and (path / DRIVER_FILE).is_file():
                found.append(int(path.name.split("=", 1)[1]))
        return sorted(found)

    def latest(self) -> tuple[int, Path] | None:
        steps = self.steps()
        if not steps:
            return None
        return steps[-1], self.root / f"step={steps[-1]}"

    def load_driver(self, directory: Path) -> dict[str, Any]:
        """The driver's part of a checkpoint; CheckpointError if it is damaged."""
        path = directory / DRIVER_FILE
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(path, f"{type(exc).__name__}: {exc}") from None
        if not isinstance(loaded, dict):
            raise CheckpointError(path, "not a JSON object")
        return loaded

    def load_resumable(self, directory: Path) -> dict[str, Any]:
        """``load_driver``, checked to hold what a resume needs (step, env, history)."""
        loaded = self.load_driver(directory)
        path = directory / DRIVER_FILE
        for key, kind in _DRIVER_KEYS.items():
            if not isinstance(loaded.get(key), kind):
                raise CheckpointError(path, f"{key}: missing or not a {kind.__name__}")
        for entry in loaded["history"]:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("step"), int)
                and isinstance(entry.get("outcome"), dict)
                and isinstance(entry.get("metrics"), dict)
            ):
                raise CheckpointError(path, "history: an entry lacks step, outcome or metrics")
        return loaded

    def _prune(self, keep: int) -> None:
        for step in self.steps()[:-keep]:
            shutil.rmtree(self.root / f"step={step}", ignore_errors=True)
        for stale in self.root.glob(".step=*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
