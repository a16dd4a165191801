"""Per-round statistics of a run's decision values, aggregated by DuckDB straight from Parquet.

All aggregation happens inside DuckDB so a report over million-agent rounds never
materialises the decisions as Python objects; only one small row per round (or per
round and key) comes back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import yaml
from pydantic import ValidationError

from megasim.config import DEFAULT_SCENARIO, format_validation_error
from megasim.plugins import ScenarioLoadError, make_scenario
from megasim.runtime.base import LATENCY_EDGES_MS, ModelStepStats
from megasim.scenarios.base import Scenario, ValueScale

BreakdownKey = Literal["model", "group", "prompt_variant"]
BREAKDOWN_KEYS: tuple[BreakdownKey, ...] = ("model", "group", "prompt_variant")

# Quoted because ``group`` is an SQL keyword; the mapping also whitelists what reaches SQL.
_KEY_COLUMNS: dict[str, str] = {
    "model": '"model"',
    "group": '"group"',
    "prompt_variant": '"prompt_variant"',
}

# A decision counts as valid only when flagged valid AND it carries a finite number, so a
# writer bug (valid flag with a null/NaN value) cannot poison means or winning numbers.
_DECISIONS = """
SELECT step, "model", "group", prompt_variant, error, raw_text IS NULL AS no_answer,
       tokens_in, tokens_out, latency_ms,
       coalesce(valid AND value IS NOT NULL AND isfinite(value), false) AS ok,
       CASE WHEN valid AND value IS NOT NULL AND isfinite(value) THEN value END AS v
FROM decisions
"""

_VALUE_STATS = "count(*) AS n, count(v) AS valid, avg(v), median(v), stddev_pop(v)"


class ReportError(Exception):
    """A run directory cannot be reported on (missing, no step files, unreadable Parquet)."""


GameParams = ValueScale  # the name reports have always used for it


@dataclass(slots=True, frozen=True)
class RoundStats:
    """One round pooled over every group (the winner is the pooled, not a per-group, one).

    ``errors`` counts decisions with no answer at all (the model call failed after its
    retries, or the agent raised); ``invalid`` also counts answers that did not parse.
    ``std`` is the population standard deviation (ddof=0, like ``numpy.std``); value
    statistics are None when the round has no valid answer.
    """

    step: int
    n: int
    valid: int
    invalid: int
    errors: int
    mean: float | None
    median: float | None
    std: float | None
    min: float | None
    max: float | None
    q25: float | None
    q75: float | None
    winner: float | None
    tokens_in: int
    tokens_out: int
    latency_p50_ms: float | None  # metrics.jsonl's definition: see latency_p50s()


@dataclass(slots=True, frozen=True)
class BreakdownRow:
    """Statistics of one round restricted to one model / group / prompt variant.

    ``key`` is always a string (groups are rendered as their number) so rows of every
    breakdown share one type. ``winner`` is only set for ``by="group"``: each group plays
    its own game, whereas a model's or variant's "winner" would mean nothing.
    """

    step: int
    by: str
    key: str
    n: int
    valid: int
    mean: float | None
    median: float | None
    std: float | None
    winner: float | None


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The run's stored config.yaml as plain data ({} when there is none)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ReportError(f"{path}: expected a mapping at the top level")
    return config


def run_scenario(run_dir: Path) -> tuple[Scenario, Any]:
    """The run's scenario (named in config.yaml) and its validated settings section."""
    path = Path(run_dir) / "config.yaml"
    config = read_run_config(run_dir)
    try:
        scenario = make_scenario(str(config.get("scenario", DEFAULT_SCENARIO)))
    except ScenarioLoadError as exc:
        raise ReportError(f"{path}: scenario: {exc}") from exc
    section, model = scenario.section, scenario.settings_model
    if section is None or model is None:
        return scenario, None
    try:
        return scenario, model.model_validate(config.get(section) or {})
    except ValidationError as exc:
        where = f"{path}: {section}"
        raise ReportError(format_validation_error(where, exc, config.get(section))) from exc


def load_game(run_dir: Path) -> GameParams:
    """How to read the run's values: its scenario's ``value_scale`` of its settings (the
    guessing game's defaults when the run has no config.yaml)."""
    if not (Path(run_dir) / "config.yaml").is_file():
        return GameParams()
    scenario, settings = run_scenario(run_dir)
    return scenario.value_scale(settings)


def step_files(run_dir: Path) -> list[Path]:
    """All ``steps/*/*.parquet`` files of a run, or ReportError explaining what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory {run_dir} does not exist")
    files = sorted((run_dir / "steps").glob("*/*.parquet"))
    if not files:
        raise ReportError(
            f"no step files in {run_dir / 'steps'} (expected steps/step=<n>/shard=<k>.parquet);"
            " has the run finished a round?"
        )
    return files


def connect(run_dir: Path) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB connection with a ``decisions`` view over the run's step files.

    Hive partitioning is off on purpose: DuckDB would otherwise replace the file's own
    ``step`` column with the value parsed from the ``step=<n>`` directory name.
    """
    files = [str(f) for f in step_files(run_dir)]
    con = duckdb.connect()
    try:
        con.read_parquet(files, hive_partitioning=False).create_view("decisions")
    except duckdb.Error as exc:
        con.close()
        raise ReportError(f"cannot read step files of {run_dir}: {exc}") from exc
    return con


def query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[object] | Mapping[str, object] | None = None,
) -> list[Any]:
    """Run SQL, turning DuckDB failures (e.g. a truncated shard) into ReportError."""
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        raise ReportError(f"query over step files failed: {exc}") from exc
    except UnicodeDecodeError as exc:  # a damaged file whose text is no longer UTF-8
        raise ReportError(f"query over step files failed: text that is not UTF-8: {exc}") from exc


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def latency_p50s(con: duckdb.DuckDBPyConnection) -> dict[int, float | None]:
    """Each round's median decision latency by the run's one definition, the one
    metrics.jsonl records (``ModelStepStats.latency_quantile_ms``: nearest rank, upper edge
    of its bin): the latencies are binned with the shards' own ``searchsorted`` over
    ``LATENCY_EDGES_MS``, so a report and the run's metrics give the same number. (Binned
    in numpy, not SQL: DuckDB's histogram over given bins is not in every version we
    support.)"""
    try:
        columns = con.execute("SELECT step, latency_ms::DOUBLE AS ms FROM decisions").fetchnumpy()
    except duckdb.Error as exc:
        raise ReportError(f"query over step files failed: {exc}") from exc
    steps = np.asarray(columns["step"], dtype=np.int64)
    bins = np.searchsorted(LATENCY_EDGES_MS, np.asarray(columns["ms"], dtype=np.float64))
    size = len(LATENCY_EDGES_MS) + 1
    out: dict[int, float | None] = {}
    for step in np.unique(steps).tolist():
        counts = np.bincount(bins[steps == step], minlength=size).tolist()
        out[int(step)] = ModelStepStats(latency_hist=counts).latency_quantile_ms(0.5)
    return out


def round_table(run_dir: Path) -> list[RoundStats]:
    """One RoundStats per round, ordered by step, with the winner over all groups pooled."""
    game = load_game(run_dir)
    sql = f"""
        SELECT step, {_VALUE_STATS},
               count(*) FILTER (WHERE no_answer AND NOT ok),
               min(v), max(v), quantile_cont(v, 0.25), quantile_cont(v, 0.75),
               sum(tokens_in)::BIGINT, sum(tokens_out)::BIGINT
        FROM ({_DECISIONS}) GROUP BY step ORDER BY step
    """
    con = connect(run_dir)
    try:
        rows = query(con, sql)
        latency = latency_p50s(con)
    finally:
        con.close()
    out: list[RoundStats] = []
    for step, n, valid, mean, med, std, errors, lo, hi, q25, q75, tin, tout in rows:
        out.append(
            RoundStats(
                step=int(step),
                n=int(n),
                valid=int(valid),
                invalid=int(n) - int(valid),
                errors=int(errors),
                mean=_opt(mean),
                median=_opt(med),
                std=_opt(std),
                min=_opt(lo),
                max=_opt(hi),
                q25=_opt(q25),
                q75=_opt(q75),
                winner=game.winner(_opt(mean)),
                tokens_in=int(tin),
                tokens_out=int(tout),
                latency_p50_ms=latency.get(int(step)),
            )
        )
    return out


def breakdown(run_dir: Path, by: BreakdownKey) -> list[BreakdownRow]:
    """Per-round statistics split by ``by``, ordered by step then key (groups numerically)."""
    column = _KEY_COLUMNS.get(by)
    if column is None:
        raise ValueError(f"by must be one of {BREAKDOWN_KEYS}, got {by!r}")
    game = load_game(run_dir)
    sql = f"""
        SELECT step, {column}::VARCHAR, {_VALUE_STATS}
        FROM ({_DECISIONS}) GROUP BY step, {column} ORDER BY step, {column}
    """
    con = connect(run_dir)
    try:
        rows = query(con, sql)
    finally:
        con.close()
    return [
        BreakdownRow(
            step=int(step),
            by=by,
            key=str(key),
            n=int(n),
            valid=int(valid),
            mean=_opt(mean),
            median=_opt(med),
            std=_opt(std),
            winner=game.winner(_opt(mean)) if by == "group" else None,
        )
        for step, key, n, valid, mean, med, std in rows
    ]


def summary_payload(
    run_dir: Path,
    rounds: Sequence[RoundStats],
    breakdowns: dict[str, list[BreakdownRow]],
) -> dict[str, Any]:
    """JSON-ready summary (strict JSON: non-finite floats become null)."""

    def clean(d: dict[str, Any]) -> dict[str, Any]:
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()
        }

    return {
        "run_dir": str(run_dir),
        "game": asdict(load_game(run_dir)),
        "rounds": [clean(asdict(r)) for r in rounds],
        "breakdowns": {k: [clean(asdict(r)) for r in rows] for k, rows in breakdowns.items()},
    }
