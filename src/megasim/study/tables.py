"""The study's numbers: one row per cell and round, computed by DuckDB from each cell's
decisions (never from the run's own metrics, so the report checks the runs, not itself).

Statistics over valid answers only (invalid ones are counted, never averaged): N
decisions, valid, mean, median, population std (ddof 0, as the game's own), min, max, the
winning number ``ratio * mean + offset`` (for one group; a cell of several groups gets the
pooled figure, each group's own game is in its run report), and the cost: calls (from the
texts kept per decision: a repair or extraction adds one), tokens, latency p50/p95.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from megasim.report.models import STAND_IN_BACKENDS
from megasim.scenarios.guess_answers import EXTRACT_SEPARATOR, REPAIR_SEPARATOR
from megasim.scenarios.guess_two_thirds import game_settings
from megasim.study.spec import Cell

_PER_ROUND = """
SELECT step AS round,
       count(*) AS n,
       count(*) FILTER (WHERE valid) AS valid,
       avg(value) FILTER (WHERE valid) AS mean,
       median(value) FILTER (WHERE valid) AS median,
       stddev_pop(value) FILTER (WHERE valid) AS std,
       min(value) FILTER (WHERE valid) AS min,
       max(value) FILTER (WHERE valid) AS max,
       sum(1 + (length(coalesce(raw_text, '')) - length(replace(coalesce(raw_text, ''), $rep, '')))
             // length($rep)
           + (length(coalesce(raw_text, '')) - length(replace(coalesce(raw_text, ''), $ext, '')))
             // length($ext)) AS calls,
       sum(tokens_in) AS tokens_in,
       sum(tokens_out) AS tokens_out,
       sum(latency_ms) AS latency_total_ms,
       quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
       quantile_cont(latency_ms, 0.95) AS latency_p95_ms,
       string_agg(DISTINCT prompt_variant, '+' ORDER BY prompt_variant) AS prompt,
       string_agg(DISTINCT model, '+' ORDER BY model) AS models
FROM read_parquet($files, hive_partitioning = false)
GROUP BY step ORDER BY step
"""


def cell_model(cell: Cell) -> tuple[str, str]:
    """The model a cell's agents use (the grid's, else the config's default) and its backend."""
    config = cell.config
    name = config.force_model or config.default_model or next(iter(config.models))
    return name, config.models[name].backend


def cell_rows(cell: Cell, path: Path) -> list[dict[str, Any]]:
    files = sorted(str(p) for p in (path / "steps").glob("step=*/*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    result = con.execute(
        _PER_ROUND, {"files": files, "rep": REPAIR_SEPARATOR, "ext": EXTRACT_SEPARATOR}
    )
    names = [d[0] for d in result.description]
    config = cell.config
    model, backend = cell_model(cell)
    population = config.population_file or "spec"
    game = game_settings(config)
    fixed = {
        "cell": cell.id,
        "model": model,
        "backend": backend,
        "stand_in": backend in STAND_IN_BACKENDS,
        "ratio": game.ratio,
        "offset": game.offset,
        "temperature": config.models[model].temperature,
        "population": Path(population).stem if population != "spec" else "spec",
        "agents": config.population.size if config.population else None,
        "rounds": config.rounds,
        "groups": config.population.groups if config.population else None,
        "seed": config.seed,
        "memory": game.memory,
        "answer_mode": game.answer_mode,
    }
    rows = []
    for values in result.fetchall():
        row = dict(zip(names, values, strict=True))
        used = str(row.pop("models")).split("+")
        if used != [model]:  # a mixture: the models the agents really used
            backends = [config.models[m].backend for m in used]
            row |= {"model": "+".join(used), "backend": "+".join(backends),
                    "stand_in": any(b in STAND_IN_BACKENDS for b in backends)}  # fmt: skip
        mean = row["mean"]
        winner = None if mean is None else game.ratio * mean + game.offset
        rows.append({**fixed, **row, "winner": winner, "invalid": row["n"] - row["valid"]})
    return rows


COLUMNS = (
    "cell", "model", "backend", "stand_in", "prompt", "ratio", "offset", "temperature",
    "population", "agents", "groups", "rounds", "seed", "memory", "answer_mode", "round",
    "n", "valid", "invalid", "mean", "median", "std", "min", "max", "winner", "calls",
    "tokens_in", "tokens_out", "latency_total_ms", "latency_p50_ms", "latency_p95_ms",
)  # fmt: skip


def cells_table(cells: list[tuple[Cell, Path]]) -> pa.Table:
    """Every finished round of every cell, one row each (``cells.parquet``)."""
    rows = [row for cell, path in cells for row in cell_rows(cell, path)]
    if groups := [r for r in rows if isinstance(r["groups"], str)]:
        for r in groups:
            r["groups"] = None  # a column-named grouping: not a count
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows])
