"""Breakdowns the paper reports beside the round means, from the cells' decisions:

- win counts per model (mixtures): in each group and round, the agents whose valid answer
  is closest to that group's winning number win (ties all win); counted per model;
- means per population attribute (background studies: education, profession), the
  study's ``breakdowns`` columns plus the column a cell discloses (``game.disclose``);
- mean and std by temperature per model and round, pooled exactly from the cell rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from megasim.scenarios.guess_two_thirds import game_settings
from megasim.study.spec import Cell

_WINS = """
WITH d AS (SELECT step, "group", model, value
           FROM read_parquet($files, hive_partitioning = false) WHERE valid),
     g AS (SELECT step, "group", $ratio * avg(value) + $offset AS target
           FROM d GROUP BY step, "group"),
     t AS (SELECT d.*, g.target, abs(d.value - g.target) AS dist
           FROM d JOIN g USING (step, "group")),
     best AS (SELECT step, "group", min(dist) AS dist FROM t GROUP BY step, "group")
SELECT t.step AS round, t."group" AS "group", t.model AS model, count(*) AS wins,
       min(t.value) AS number, max(t.value) AS number_high, any_value(t.target) AS target
FROM t JOIN best ON t.step = best.step AND t."group" = best."group" AND t.dist = best.dist
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""

_BY_ATTRIBUTE = """
SELECT d.step AS round, CAST(p.{column} AS VARCHAR) AS value, count(*) AS n,
       count(*) FILTER (WHERE d.valid) AS valid,
       avg(d.value) FILTER (WHERE d.valid) AS mean,
       stddev_pop(d.value) FILTER (WHERE d.valid) AS std
FROM read_parquet($files, hive_partitioning = false) d
JOIN read_parquet($population) p USING (agent_id)
GROUP BY 1, 2 ORDER BY 1, 2
"""


def _files(path: Path) -> list[str]:
    return sorted(str(p) for p in (path / "steps").glob("step=*/*.parquet"))


def _query(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = duckdb.connect().execute(sql, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def win_rows(cell: Cell, path: Path) -> list[dict[str, Any]]:
    """Who won each group's round, per model, and with what number."""
    files = _files(path)
    if not files:
        return []
    game = game_settings(cell.config)
    params = {"files": files, "ratio": game.ratio, "offset": game.offset}
    return [{"cell": cell.id, **row} for row in _query(_WINS, params)]


def attribute_rows(cell: Cell, path: Path, columns: list[str]) -> list[dict[str, Any]]:
    """Mean of valid answers per value of each population column, per round."""
    files, population = _files(path), path / "population.parquet"
    if not files or not population.is_file():
        return []
    names = set(pq.read_schema(population).names)
    disclose = game_settings(cell.config).disclose
    wanted = [*columns, *([disclose] if disclose else [])]
    rows: list[dict[str, Any]] = []
    for column in dict.fromkeys(c for c in wanted if c in names and c != "agent_id"):
        quoted = '"' + column.replace('"', '""') + '"'
        sql = _BY_ATTRIBUTE.format(column=quoted)
        for row in _query(sql, {"files": files, "population": str(population)}):
            rows.append({"cell": cell.id, "attribute": column, **row})
    return rows


def temperature_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, temperature and round: pooled mean and population std of valid answers
    over the cells (exact from each cell's count, mean and std)."""
    acc: dict[tuple[str, float, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for r in rows:
        if not r["valid"]:
            continue
        a = acc[(r["model"], r["temperature"], r["round"])]
        a[0] += r["valid"]
        a[1] += r["valid"] * r["mean"]
        a[2] += r["valid"] * (r["std"] ** 2 + r["mean"] ** 2)
        a[3] += 1
    out = []
    for (model, temperature, round_no), (n, s, sq, cells) in sorted(acc.items()):
        mean = s / n
        out.append({
            "model": model, "temperature": temperature, "round": round_no, "cells": int(cells),
            "valid": int(n), "mean": mean, "std": math.sqrt(max(sq / n - mean * mean, 0.0)),
        })  # fmt: skip
    return out
