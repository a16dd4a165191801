"""Dashboard numbers computed from a run's decisions with DuckDB, cached per step files.

A finished step's files never change (a rerun replaces them atomically, which changes
their mtime), so results are cached by the files' (name, size, mtime) signature.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from megasim.explore.filters import FilterError, quote
from megasim.runtime.answers import ANSWER_BINS, BREAKDOWN_COLUMNS, histogram_quantile, key_stats
from megasim.store.schema import DECISION_COLUMNS

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
        mean, median, std of the answers. Numeric attributes with many values are binned.

        Computed and cached step by step: while a run goes on, each refresh pays only for
        the steps it has not seen."""
        if by not in _DECISION_GROUPS and (by not in columns or by in DECISION_COLUMNS):
            raise FilterError(
                f"cannot break down by {by!r}: use a population column or one of "
                f"{list(_DECISION_GROUPS)}"
            )
        population = run_path / "population.parquet"
        bins_key = ("bins", str(run_path), by, _signature([population]))
        binning = self._cached(bins_key, lambda: _binning(population, by, columns))
        rows: list[dict[str, Any]] = []
        for step_dir in sorted(
            (run_path / "steps").glob("step=*"), key=lambda p: int(p.name.split("=", 1)[1])
        ):
            files = sorted(step_dir.glob("*.parquet"))
            if not files:
                continue
            key = ("breakdown", str(run_path), by, binning, _signature([*files, population]))
            rows += self._cached(key, partial(_breakdown, files, population, by, binning))
        sizes: dict[str, int] = {}
        for row in rows:
            sizes[row["key"]] = sizes.get(row["key"], 0) + row["n"]
        shown = set(sorted(sizes, key=lambda k: -sizes[k])[:MAX_KEYS])
        return {"by": by, "rows": [r for r in rows if r["key"] in shown], "keys_total": len(sizes)}


def _binning(population: Path, by: str, columns: dict[str, str]) -> tuple[float, float] | None:
    """(low, width) of ten equal-width bins for a numeric population attribute with more
    than 20 values; None to group by value."""
    if columns.get(by) != "number" or by in _DECISION_GROUPS:
        return None
    db = duckdb.connect(":memory:")
    row = db.execute(
        f"SELECT count(DISTINCT {quote(by)}), min({quote(by)}), max({quote(by)}) "
        "FROM read_parquet(?)",
        [str(population)],
    ).fetchone()
    if row is None or row[0] is None or int(row[0]) <= 20:
        return None
    low, high = float(row[1]), float(row[2])
    return low, max((high - low) / 10, 1e-9)


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
    files: list[Path], population: Path, by: str, binning: tuple[float, float] | None
) -> list[dict[str, Any]]:
    """One step's rows of a breakdown (``files``: that step's shard files)."""
    db = duckdb.connect(":memory:")
    in_decisions = by in _DECISION_GROUPS
    column = f"d.{quote(by)}" if in_decisions else f"p.{quote(by)}"
    join = "" if in_decisions else " JOIN read_parquet(?) p USING (agent_id)"
    params: list[Any] = [[str(f) for f in files]] + ([] if in_decisions else [str(population)])
    key = column
    if binning is not None:
        low, width = binning
        key = f"{low} + floor(({column} - {low}) / {width}) * {width}"
    rows = db.execute(
        f"SELECT d.step, CAST({key} AS VARCHAR) AS k, count(*) AS n, "
        "count(*) FILTER (WHERE d.valid) AS valid, avg(d.value) AS mean, "
        "median(d.value) AS median, stddev_pop(d.value) AS std "
        f"FROM read_parquet(?, hive_partitioning = false) d{join} "
        "GROUP BY ALL ORDER BY n DESC",
        params,
    ).fetchall()
    return [
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
    ]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number


def values_from_summary(record: dict[str, Any], bins: int) -> dict[str, Any] | None:
    """The ``values`` view of a step from the answer summary its shards reduced (no file
    read): counts exact, quantiles within one of ANSWER_BINS bins. None if absent."""
    summary = record.get("answers") or {}
    if "counts" not in summary:
        return None
    fine = np.asarray(summary["counts"], dtype=np.int64)
    low, high = float(summary["low"]), float(summary["high"])
    width = (high - low) / ANSWER_BINS
    occupied = np.nonzero(fine)[0]
    first, last = (int(occupied[0]), int(occupied[-1]) + 1) if occupied.size else (0, 0)
    group = max(1, -(-(last - first) // max(1, bins)))  # zoom on the occupied bins
    span = fine[first:last]
    span = np.pad(span, (0, (-len(span)) % group))
    counts = span.reshape(-1, group).sum(axis=1)
    edges = low + width * (first + group * np.arange(len(counts) + 1))
    n = int(record.get("decisions", int(fine.sum())))
    errors, invalid = int(record.get("errors", 0)), int(record.get("invalid", 0))
    outcome = record.get("outcome") or {}
    result: dict[str, Any] = {
        "n": n,
        "valid": int(fine.sum()),
        "invalid": invalid,
        "errors": errors,
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "approximate": True,
        "bin_width": (high - low) / ANSWER_BINS,
    }
    if fine.sum() == 0:
        return result | {"edges": [], "counts": []}
    quantiles = {
        name: histogram_quantile(summary, q)
        for name, q in (("p05", 0.05), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p95", 0.95))
    }
    return result | {
        "mean": outcome.get("mean"),
        "std": outcome.get("std"),
        "min": low + width * float(occupied[0]),
        "max": low + width * float(occupied[-1] + 1),
        "quantiles": quantiles,
    }


def breakdown_from_metrics(metrics: list[dict[str, Any]], by: str) -> dict[str, Any] | None:
    """Per step and key of a decision column (model, prompt variant, group) from the
    shards' summaries in metrics.jsonl; None when a step lacks them."""
    if by not in BREAKDOWN_COLUMNS:
        return None
    rows: list[dict[str, Any]] = []
    for record in metrics:
        keys = ((record.get("answers") or {}).get("by") or {}).get(by)
        if keys is None:
            return None
        for key, sums in keys.items():
            rows.append(
                {"step": int(record["step"]), "key": key, **key_stats(sums), "median": None}
            )
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row["key"]] = sizes.get(row["key"], 0) + int(row["n"])
    shown = set(sorted(sizes, key=lambda k: -sizes[k])[:MAX_KEYS])
    return {"by": by, "rows": [r for r in rows if r["key"] in shown], "keys_total": len(sizes)}
