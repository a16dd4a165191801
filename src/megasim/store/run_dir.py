"""The run directory: everything a run produced, in open formats, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml

from megasim.store.schema import DECISION_SCHEMA

RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
RUN_ID_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, 1-128 long"
_RUN_ID = re.compile(RUN_ID_PATTERN)


class RunDirectoryError(Exception):
    """A run directory that cannot be used as asked; the message says why and what to do."""


def check_run_id(run_id: str, field: str = "run id") -> str:
    """A run id is one plain folder name: no ``/``, ``..`` or absolute path can escape
    ``out_dir``. Raises RunDirectoryError naming ``field``."""
    if not _RUN_ID.fullmatch(run_id):
        raise RunDirectoryError(f"{field}: {run_id!r} is not a valid run id ({RUN_ID_RULE})")
    return run_id


def new_run_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{os.getpid() % 10000:04d}"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RunDirectory:
    """Layout of ``runs/<run-id>/`` (see docs/architecture.md). Safe to share between shards:
    each shard writes only its own step files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, base: Path, run_id: str, field: str = "run id") -> RunDirectory:
        """A new, empty run directory ``base/run_id``; never reuses an existing one."""
        path = cls.check_new(base, run_id, field)
        if base.exists() and not base.is_dir():
            raise RunDirectoryError(f"{base}: the runs folder (out_dir, --out) is not a folder")
        try:
            base.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            raise cls._exists(base, run_id, field) from None
        except OSError as exc:
            raise RunDirectoryError(f"{path}: cannot create: {exc.strerror or exc}") from None
        (path / "steps").mkdir()
        return cls(path)

    @classmethod
    def check_new(cls, base: Path, run_id: str, field: str = "run id") -> Path:
        """``base/run_id`` if ``create`` would make it now (a check before slow work)."""
        path = base / check_run_id(run_id, field)
        if path.exists():
            raise cls._exists(base, run_id, field)
        return path

    @staticmethod
    def _exists(base: Path, run_id: str, field: str) -> RunDirectoryError:
        return RunDirectoryError(
            f"{field}: a run {run_id!r} already exists in {base}; choose another id, or "
            f"continue that run with `megasim resume {base / run_id}`"
        )

    @classmethod
    def create_unique(cls, base: Path, name: str) -> RunDirectory:
        """A new run directory named after ``name`` and the time (``-2``... on a clash)."""
        run_id = new_run_id(name)
        for attempt in range(1, 100):
            try:
                return cls.create(base, run_id if attempt == 1 else f"{run_id}-{attempt}")
            except RunDirectoryError:
                if not (base / run_id).exists():
                    raise  # not a clash
        raise RunDirectoryError(f"{base}: no free run id for {name!r}")

    # --- files -------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def population_path(self) -> Path:
        return self.path / "population.parquet"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    def step_dir(self, step: int) -> Path:
        return self.path / "steps" / f"step={step}"

    def shard_file(self, step: int, shard: int) -> Path:
        return self.step_dir(step) / f"shard={shard}.parquet"

    def journal_dir(self, step: int) -> Path:
        """Write-ahead log of the model answers of a step not yet checkpointed
        (``model/journal.py``)."""
        return self.path / "wal" / f"step={step}"

    def drop_journals(self, through: int) -> None:
        """Delete the logs of steps up to ``through``: their checkpoint holds everything.
        Best effort: a log left behind is only read if its step is ever rerun, where its
        answers (checked against each request) are still the right ones."""
        root = self.path / "wal"
        if not root.is_dir():
            return
        for folder in root.glob("step=*"):
            number = folder.name[5:]
            if number.isdigit() and int(number) <= through:
                shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # a finished run keeps no empty wal/
            root.rmdir()

    # --- writers -----------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any], versions: Mapping[str, str]) -> None:
        document = {**config, "versions": dict(versions)}
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        _atomic_write_bytes(self.config_path, text.encode())

    def write_population(self, table: pa.Table) -> None:
        tmp = self.population_path.with_name(".population.parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.population_path)

    def write_decisions(self, step: int, shard: int, columns: Mapping[str, Any] | pa.Table) -> Path:
        """Write one shard's decisions of one step; a reader never sees a partial file."""
        if isinstance(columns, pa.Table):
            table = columns
        else:
            table = pa.Table.from_pydict(dict(columns), schema=DECISION_SCHEMA)
        target = self.shard_file(step, shard)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
        return target

    def write_prompts(self, step: int, shard: int, prompts: Mapping[str, Any]) -> Path:
        """The distinct prompts of one shard's step (prompt id -> chat messages: a list of
        {role, content}), so that every decision's prompt can be shown as sent. Built
        column-wise: a million personal prompts must not cost a million JSON documents."""
        chats = list(prompts.values())
        offsets = np.zeros(len(chats) + 1, dtype=np.int32)
        np.cumsum([len(chat) for chat in chats], out=offsets[1:])
        roles = pa.array([m.role for chat in chats for m in chat], pa.string())
        contents = pa.array([m.content for chat in chats for m in chat], pa.large_string())
        turns = pa.StructArray.from_arrays([roles, contents], names=["role", "content"])
        messages = pa.ListArray.from_arrays(pa.array(offsets), turns)
        table = pa.table({"prompt_id": pa.array(list(prompts), pa.string()), "messages": messages})
        target = self.path / "prompts" / f"step={step}" / f"shard={shard}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
        return target

    def _append_jsonl(self, path: Path, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        self._append_jsonl(self.metrics_path, record)

    def rewrite_metrics(self, records: list[Mapping[str, Any]]) -> None:
        """Replace metrics.jsonl (on resume: only the checkpointed steps remain)."""
        text = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records)
        _atomic_write_bytes(self.metrics_path, text.encode())

    def append_event(self, kind: str, **data: Any) -> None:
        self._append_jsonl(self.events_path, {"time": time.time(), "event": kind, **data})

    # --- readers -----------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        loaded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        return dict(loaded)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def read_decisions(self, step: int | None = None) -> pa.Table:
        """All decisions (or one step's). The files carry their own ``step`` and ``shard``
        columns, so hive partitioning is off (pyarrow would clash with the folder names)."""
        pattern = f"step={step}/*.parquet" if step is not None else "step=*/*.parquet"
        files = sorted(str(p) for p in (self.path / "steps").glob(pattern))
        if not files:
            return DECISION_SCHEMA.empty_table()
        dataset = ds.dataset(files, schema=DECISION_SCHEMA, format="parquet", partitioning=None)
        return dataset.to_table()

    def read_population(self) -> pa.Table:
        return pq.read_table(self.population_path)
