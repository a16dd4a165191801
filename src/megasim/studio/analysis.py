"""Dashboard numbers computed from a run's decisions with DuckDB, cached per step files.

A finished step's files never change (a rerun replaces them atomically, which changes
their mtime), so results are cached by the files' (name, size, mtime) signature.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from megasim.explore.filters import FilterError, quote

_DECISION_GROUPS = ("model", "prompt_variant", "group", "shard", "valid", "step")
MAX_KEYS = 30  # breakdown keys shown; the rest are summed as "other"


def _signature(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    sig = []
    for f in files:
        try:
            stat = f.stat()
        except OSError:
            continue
        sig.append((f.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sig)


class RunAnalysis:
    """Histogram, quantiles and breakdowns of decisions, cached (LRU) by file signature."""

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = compute()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return value

    @staticmethod
    def step_files(run_path: Path, step: int | None = None) -> list[Path]:
        pattern = f"step={step}/*.parquet" if step is not None else "step=*/*.parquet"
        return sorted((run_path / "steps").glob(pattern))

    def values(self, run_path: Path, step: int, bins: int = 40) -> dict[str, Any]:
        """Histogram and quantiles of one step's valid answers, plus invalid and errors."""
        files = self.step_files(run_path, step)
        key = ("values", str(run_path), step, bins, _signature(files))
        return dict(self._cached(key, lambda: _values(files, bins)))

    def breakdown(self, run_path: Path, by: str, columns: dict[str, str]) -> dict[str, Any]:
        """Per step and per value of ``by`` (a population or decision column): n, valid,
        mean, median, std of the answers. Numeric attributes with many values are binned."""
        if by not in columns and by not in _DECISION_GROUPS:
            raise FilterError(f"cannot break down by {by!r}: no such column")
        files = self.step_files(run_path)
        population = run_path / "population.parquet"
        key = ("breakdown", str(run_path), by, _signature([*files, population]))
        return dict(self._cached(key, lambda: _breakdown(files, population, by, columns)))


def _values(files: list[Path], bins: int) -> dict[str, Any]:
    if not files:
        return {"n": 0, "valid": 0, "invalid": 0, "errors": 0, "edges": [], "counts": []}
    db = duckdb.connect(":memory:")
    source = "read_parquet(?, hive_partitioning = false)"
    params = [[str(f) for f in files]]
    n, valid, errors = db.execute(
        f"SELECT count(*), count(*) FILTER (WHERE valid), "
        f"count(*) FILTER (WHERE raw_text IS NULL AND NOT valid) FROM {source}",
        params,
    ).fetchone() or (0, 0, 0)
    values = db.execute(f"SELECT value FROM {source} WHERE valid", params).fetchnumpy()["value"]
    result: dict[str, Any] = {
        "n": int(n),
        "valid": int(valid),
        "invalid": int(n) - int(valid) - int(errors),
        "errors": int(errors),
    }
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return result | {"edges": [], "counts": []}
    counts, edges = np.histogram(data, bins=bins)
    quantiles = np.quantile(data, [0.05, 0.25, 0.5, 0.75, 0.95])
    return result | {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "mean": float(data.mean()),
        "std": float(data.std()),
        "min": float(data.min()),
        "max": float(data.max()),
        "quantiles": {
            "p05": float(quantiles[0]),
            "p25": float(quantiles[1]),
            "median": float(quantiles[2]),
            "p75": float(quantiles[3]),
            "p95": float(quantiles[4]),
        },
    }


def _breakdown(
    files: list[Path], population: Path, by: str, columns: dict[str, str]
) -> dict[str, Any]:
    if not files:
        return {"by": by, "rows": []}
    db = duckdb.connect(":memory:")
    in_decisions = by in _DECISION_GROUPS
    column = f"d.{quote(by)}" if in_decisions else f"p.{quote(by)}"
    join = "" if in_decisions else " JOIN read_parquet(?) p USING (agent_id)"
    params: list[Any] = [[str(f) for f in files]] + ([] if in_decisions else [str(population)])
    source = f"read_parquet(?, hive_partitioning = false) d{join}"
    key = column
    if columns.get(by) == "number" and by not in ("step", "group", "shard"):
        distinct_row = db.execute(
            f"SELECT count(DISTINCT {column}) FROM {source}", params
        ).fetchone()
        if distinct_row and int(distinct_row[0]) > 20:  # bin: ten equal-width buckets
            low_high = db.execute(f"SELECT min({column}), max({column}) FROM {source}", params)
            low, high = low_high.fetchone() or (0, 0)
            width = max((float(high) - float(low)) / 10, 1e-9)
            key = f"{float(low)} + floor(({column} - {float(low)}) / {width}) * {width}"
    rows = db.execute(
        f"SELECT d.step, CAST({key} AS VARCHAR) AS k, count(*) AS n, "
        "count(*) FILTER (WHERE d.valid) AS valid, avg(d.value) AS mean, "
        f"median(d.value) AS median, stddev_pop(d.value) AS std FROM {source} "
        "GROUP BY ALL ORDER BY d.step, n DESC",
        params,
    ).fetchall()
    keys_by_size: dict[str, int] = {}
    for _, k, n, *_ in rows:
        keys_by_size[str(k)] = keys_by_size.get(str(k), 0) + int(n)
    shown = set(sorted(keys_by_size, key=lambda k: -keys_by_size[k])[:MAX_KEYS])
    out = [
        {
            "step": int(step),
            "key": str(k),
            "n": int(n),
            "valid": int(valid),
            "mean": _num(mean),
            "median": _num(median),
            "std": _num(std),
        }
        for step, k, n, valid, mean, median, std in rows
        if str(k) in shown
    ]
    return {"by": by, "rows": out, "keys_total": len(keys_by_size)}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number
