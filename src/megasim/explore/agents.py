"""AgentIndex: a run's population joined with one step's decisions, queried in DuckDB.

Why a materialised in-memory table: a page of a million agents, filtered and sorted,
must answer in well under 300 ms, and re-reading two Parquet files per request costs
more than that. Building the table once per (run, step) costs about a second per
million agents; ``AgentIndexCache`` keeps the most recent few.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from megasim.explore.filters import Filter, FilterError, quote, where_clause
from megasim.store.run_dir import RunDirectory
from megasim.store.schema import DECISION_SCHEMA

# Decision columns joined to each agent (population columns keep their own names).
DECISION_FIELDS: tuple[str, ...] = (
    "step",
    "value",
    "valid",
    "raw_text",
    "error",
    "prompt_id",
    "text",
    "tokens_in",
    "tokens_out",
    "latency_ms",
)
PAGE_LIMIT = 500
_CLIP = 240  # long texts are clipped in pages (the agent detail shows them whole)


def _kind(duck_type: str) -> str:
    upper = duck_type.upper()
    if upper == "BOOLEAN":
        return "bool"
    if any(t in upper for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL")):
        return "number"
    return "text"


def column_kinds(run_path: Path) -> dict[str, str]:
    """number / bool / text of every population and decision column, from file schemas
    only (no table built: cheap enough for every dashboard refresh)."""
    kinds: dict[str, str] = {}
    for field in [*DECISION_SCHEMA, *pq.read_schema(run_path / "population.parquet")]:
        if pa.types.is_boolean(field.type):
            kinds[field.name] = "bool"
        elif pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            kinds[field.name] = "number"
        else:
            kinds[field.name] = "text"
    return kinds


def completed_step(run_path: Path) -> int | None:
    """The last step whose every shard file is written (from metrics.jsonl), if any."""
    steps = [int(m["step"]) for m in RunDirectory(run_path).read_metrics() if "step" in m]
    return max(steps) if steps else None


class AgentIndex:
    """Agents of one run with their decision of ``step`` (None: population only)."""

    def __init__(self, run_path: Path, step: int | None) -> None:
        self.run_path = run_path
        self.step = step
        self._db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        population = str(run_path / "population.parquet")
        files = sorted(str(p) for p in (run_path / "steps" / f"step={step}").glob("*.parquet"))
        if step is not None and files:
            picked = ", ".join(f"d.{quote(c)}" for c in DECISION_FIELDS)
            self._db.execute(
                f"CREATE TABLE agents AS SELECT p.*, {picked} "
                "FROM read_parquet(?) p LEFT JOIN read_parquet(?, hive_partitioning = false) d "
                "USING (agent_id) ORDER BY agent_id",
                [population, files],
            )
        else:
            self._db.execute(
                "CREATE TABLE agents AS SELECT * FROM read_parquet(?) ORDER BY agent_id",
                [population],
            )
        described = self._db.execute("DESCRIBE agents").fetchall()
        self.columns: list[tuple[str, str]] = [(str(r[0]), _kind(str(r[1]))) for r in described]
        self.kinds = dict(self.columns)
        self.rows = int(self._fetch_one("SELECT count(*) FROM agents", []))

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:  # a cursor per query: safe from the server's worker threads
            return self._db.cursor()

    def _fetch_one(self, sql: str, params: list[Any]) -> Any:
        row = self._cursor().execute(sql, params).fetchone()
        return row[0] if row else None

    def _order(self, sort: str | None, descending: bool) -> str:
        if sort is None or sort == "agent_id":
            return f" ORDER BY agent_id {'DESC' if descending else 'ASC'}"
        if sort not in self.kinds:
            raise FilterError(f"cannot sort by {sort!r}: no such column")
        direction = "DESC" if descending else "ASC"
        return f" ORDER BY {quote(sort)} {direction} NULLS LAST, agent_id"

    def count(self, filters: Sequence[Filter]) -> int:
        where, params = where_clause(filters, self.kinds)
        return int(self._fetch_one(f"SELECT count(*) FROM agents{where}", params))

    def page(
        self,
        filters: Sequence[Filter],
        sort: str | None = None,
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(matching agents, one page of them); long texts clipped."""
        where, params = where_clause(filters, self.kinds)
        limit = max(1, min(limit, PAGE_LIMIT))
        # Late materialisation: sort only (key, agent_id), then fetch the page's full rows;
        # sorting whole rows (texts included) costs several times more at a million.
        order = self._order(sort, descending)
        sql = f"SELECT agent_id FROM agents{where}{order} LIMIT ? OFFSET ?"
        found_ids = self._cursor().execute(sql, [*params, limit, max(0, offset)]).fetchall()
        ids = [r[0] for r in found_ids]
        rows: list[dict[str, Any]] = []
        if ids:
            cursor = self._cursor().execute(
                "SELECT * FROM agents WHERE agent_id IN (SELECT unnest(?))", [ids]
            )
            names = [d[0] for d in cursor.description or []]
            found = {r[0]: r for r in cursor.fetchall()}  # agent_id is the first column
            rows = [_clipped(dict(zip(names, found[i], strict=True))) for i in ids]
        return self.count(filters), rows

    def agent_ids(self, filters: Sequence[Filter]) -> list[int]:
        where, params = where_clause(filters, self.kinds)
        rows = self._cursor().execute(f"SELECT agent_id FROM agents{where}", params).fetchall()
        return [int(r[0]) for r in rows]

    def row(self, agent_id: int) -> dict[str, Any] | None:
        cursor = self._cursor().execute("SELECT * FROM agents WHERE agent_id = ?", [agent_id])
        names = [d[0] for d in cursor.description or []]
        found = cursor.fetchone()
        return dict(zip(names, found, strict=True)) if found else None

    def export(
        self, filters: Sequence[Filter], sort: str | None, descending: bool, fmt: str, target: Path
    ) -> Path:
        """Write every matching agent (not one page) as CSV or Parquet."""
        if fmt not in ("csv", "parquet"):
            raise FilterError(f"export format {fmt!r}: use csv or parquet")
        where, params = where_clause(filters, self.kinds)
        select = f"SELECT * FROM agents{where}{self._order(sort, descending)}"
        options = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
        escaped = str(target).replace("'", "''")
        self._cursor().execute(f"COPY ({select}) TO '{escaped}' ({options})", params)
        return target


def _clipped(row: dict[str, Any]) -> dict[str, Any]:
    for key, value in row.items():
        if isinstance(value, str) and len(value) > _CLIP:
            row[key] = value[:_CLIP] + "…"
        elif isinstance(value, float) and value != value:  # NaN is not JSON
            row[key] = None
        elif not isinstance(value, str | int | float | bool | type(None)):
            row[key] = json.loads(json.dumps(value, default=str))
    return row


class AgentIndexCache:
    """The last few AgentIndexes, rebuilt when the run's step or population changes."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._items: OrderedDict[tuple[Any, ...], AgentIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_path: Path, step: int | None = None) -> AgentIndex:
        """The index of ``step`` (default: the last completed one)."""
        step = completed_step(run_path) if step is None else step
        population = run_path / "population.parquet"
        files = sorted((run_path / "steps" / f"step={step}").glob("*.parquet"))
        stamps = tuple((f.name, f.stat().st_mtime_ns) for f in files)
        key = (str(run_path), step, population.stat().st_mtime_ns, stamps)
        with self._lock:
            index = self._items.get(key)
            if index is not None:
                self._items.move_to_end(key)
                return index
            index = AgentIndex(run_path, step)
            self._items[key] = index
            while len(self._items) > self.keep:
                # not closed here: a request may still be paging or exporting from it;
                # its DuckDB connection closes when the last reference goes
                self._items.popitem(last=False)
            return index

    def forget(self, run_path: Path) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == str(run_path)]:
                self._items.pop(key)
