"""Progress of a background run: an append-only JSONL sidecar, merged into Parquet at the end.

One line per finished agent, written as soon as its answer is accepted or finally
rejected and flushed at once, so a killed process (Ctrl-C, SIGKILL) loses nothing: the
line is in the OS's page cache. ``fsync`` runs at most every ``fsync_every_s`` seconds
and on close, so a power cut loses at most that window (an fsync per line would cap a
fast server at a few hundred agents per second). A line cut short by a crash is removed
when the sidecar is opened again; if an agent appears twice, its last line wins.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from megasim.population.backgrounds_prompt import BACKGROUND_COLUMNS

DONE_STATUSES = frozenset({"ok", "rejected"})


@dataclass(slots=True)
class BackgroundRecord:
    """One finished agent; field names match the output columns (plus accounting)."""

    agent_id: int
    background_status: str  # "ok" | "rejected"
    background: str | None
    background_json: str | None
    background_error: str | None
    background_model: str
    background_attempts: int
    story: str | None = None  # kept so a resumed run can rebuild the near-duplicate index
    tokens_in: int = 0
    tokens_out: int = 0
    duplicates: int = 0

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"


def sidecar_path(out: Path) -> Path:
    """``<out>.backgrounds.jsonl``, next to the output."""
    return out.with_name(out.name + ".backgrounds.jsonl")


def repair_tail(path: Path) -> None:
    """Cut an incomplete last line (a crash mid-write) so appends start on a fresh line."""
    if not path.exists():
        return
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep, position = 0, size
        while position > 0:
            step = min(65536, position)
            position -= step
            f.seek(position)
            chunk = f.read(step)
            newline = chunk.rfind(b"\n")
            if newline != -1:
                keep = position + newline + 1
                break
        f.truncate(keep)


def read_sidecar(path: Path) -> Iterator[BackgroundRecord]:
    """Every complete, well-formed line (others are skipped), in file order."""
    if not path.exists():
        return
    names = set(BackgroundRecord.__dataclass_fields__)
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn last line
            try:
                raw = json.loads(line)
                yield BackgroundRecord(**{k: v for k, v in raw.items() if k in names})
            except (ValueError, TypeError):
                continue


class SidecarWriter:
    """Appends records; flushes each line, fsyncs at most every ``fsync_every_s``."""

    def __init__(self, path: Path, fsync_every_s: float = 0.2) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(path)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._fsync_every_s = fsync_every_s
        self._last_sync = time.monotonic()
        self.written = 0

    def write(self, record: BackgroundRecord) -> None:
        self._file.write(record.to_line())
        self._file.flush()
        self.written += 1
        now = time.monotonic()
        if now - self._last_sync >= self._fsync_every_s:
            os.fsync(self._file.fileno())
            self._last_sync = now

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> SidecarWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def input_statuses(table: pa.Table) -> list[str]:
    """Each row's status in the input: its ``background_status``, or "ok" for a row with a
    hand-written ``background`` and no status column (never overwritten), else "pending"."""
    if "background_status" in table.column_names:
        values = table.column("background_status").to_pylist()
        return [v if v in DONE_STATUSES else "pending" for v in values]
    if "background" in table.column_names:
        texts = table.column("background").to_pylist()
        return ["ok" if isinstance(t, str) and t.strip() else "pending" for t in texts]
    return ["pending"] * table.num_rows


_TYPES: dict[str, pa.DataType] = {
    "background": pa.string(),
    "background_json": pa.string(),
    "background_status": pa.string(),
    "background_error": pa.string(),
    "background_model": pa.string(),
    "background_attempts": pa.int32(),
}


def merge_backgrounds(table: pa.Table, sidecar: Path) -> pa.Table:
    """The input's columns plus the background columns: the sidecar's line for an agent
    wins over what the input held; agents in neither are "pending"."""
    columns: dict[str, list[Any]] = {}
    statuses = input_statuses(table)
    for name in BACKGROUND_COLUMNS:
        if name == "background_status":
            columns[name] = list(statuses)
        elif name in table.column_names:
            columns[name] = table.column(name).to_pylist()
        else:
            columns[name] = [None] * table.num_rows
    attempts = columns["background_attempts"]
    for i, status in enumerate(statuses):
        if status == "pending":  # a pending row keeps no stale text
            for name in BACKGROUND_COLUMNS:
                if name != "background_status":
                    columns[name][i] = None
            attempts[i] = 0
        elif attempts[i] is None:
            attempts[i] = 0
    row_of = {int(a): i for i, a in enumerate(table.column("agent_id").to_pylist())}
    for record in read_sidecar(sidecar):
        row = row_of.get(record.agent_id)
        if row is None:
            continue  # a line from another population: nothing to merge it into
        for name in BACKGROUND_COLUMNS:
            columns[name][row] = getattr(record, name)
    merged = table.drop_columns([c for c in BACKGROUND_COLUMNS if c in table.column_names])
    for name in BACKGROUND_COLUMNS:
        merged = merged.append_column(name, pa.array(columns[name], type=_TYPES[name]))
    return merged.replace_schema_metadata(table.schema.metadata)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write to a temporary file next to ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
