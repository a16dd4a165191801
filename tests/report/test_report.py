"""Report statistics checked against numpy on small synthetic run directories."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from rich.console import Console

from megasim.report import (
    BreakdownRow,
    GameParams,
    ReportError,
    RoundStats,
    breakdown,
    histogram_counts,
    load_game,
    render_report,
    round_table,
    write_plots,
)
from megasim.report.render import breakdown_table, cost_table, guesses_table
from megasim.runtime.base import LATENCY_EDGES_MS, ModelStepStats
from megasim.store.schema import DECISION_SCHEMA

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODELS = ("model-a", "model-b")


@dataclass
class Run:
    """A synthetic run directory plus the columns it holds, for numpy expectations."""

    path: Path
    cols: dict[str, np.ndarray]


def make_run(
    root: Path,
    rounds: int = 3,
    agents: int = 40,
    game: dict[str, float] | None = None,
    models: tuple[str, ...] = MODELS,
    step_dir: str = "step={step}",
    all_invalid_rounds: tuple[int, ...] = (),
) -> Run:
    """Write steps/<step_dir>/shard=<k>.parquet for 2 shards per round, 2 groups."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    if game is not None:
        (root / "config.yaml").write_text(
            yaml.safe_dump({"seed": 1, "rounds": rounds, "game": game})
        )
    tables = []
    ids = np.arange(agents, dtype=np.int64)
    for step in range(1, rounds + 1):
        value = rng.integers(0, 101 - 20 * step, size=agents).astype(np.float64)
        invalid = rng.random(agents) < 0.2
        invalid[:2] = True  # at least two invalid answers per round
        if step in all_invalid_rounds:
            invalid[:] = True
        error = np.full(agents, None, dtype=object)
        error[invalid & (ids % 2 == 0)] = "parse: no number"
        failed = invalid & (ids % 3 == 0)  # no answer at all: the model call failed
        error[failed] = "model: failed after 4 attempts: 503"
        if not invalid.all():
            error[np.flatnonzero(~invalid)[0]] = "retried once"  # valid row carrying an error
        table = pa.table(
            {
                "step": np.full(agents, step, dtype=np.int32),
                "agent_id": ids,
                "shard": (ids >= agents // 2).astype(np.int32),
                "group": (ids % 2).astype(np.int32),
                "model": [models[(i // 2) % len(models)] for i in ids],
                "prompt_variant": ["P1" if (i // 4) % 2 == 0 else "P2" for i in ids],
                "prompt_id": ["abc123"] * agents,
                "raw_text": [
                    None if f else f"I guess {v}" for v, f in zip(value, failed, strict=True)
                ],
                "value": pa.array(np.where(invalid, np.nan, value), mask=invalid),
                "valid": ~invalid,
                "tokens_in": rng.integers(50, 150, size=agents).astype(np.int32),
                "tokens_out": rng.integers(1, 30, size=agents).astype(np.int32),
                "latency_ms": rng.uniform(10, 500, size=agents).astype(np.float32),
                "error": error.tolist(),
                "text": [None] * agents,
            },
            schema=DECISION_SCHEMA,
        )
        for shard in (0, 1):
            part = table.filter(pc.equal(table["shard"], shard))
            d = root / "steps" / step_dir.format(step=step)
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, d / f"shard={shard}.parquet")
        tables.append(table)
    full = pa.concat_tables(tables)
    cols = {name: full[name].to_numpy(zero_copy_only=False) for name in full.column_names}
    return Run(root, cols)


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return make_run(tmp_path / "run", game={"ratio": 0.5, "offset": 1.0, "low": 0, "high": 100})


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9, abs=1e-9)


def assert_value_stats(row: RoundStats | BreakdownRow, values: np.ndarray) -> None:
    assert row.mean == approx(np.mean(values))
    assert row.median == approx(np.median(values))
    assert row.std == approx(np.std(values))  # population std (ddof=0)


def test_round_table_matches_numpy(run: Run) -> None:
    c = run.cols
    table = round_table(run.path)
    assert [r.step for r in table] == [1, 2, 3]
    for r in table:
        sel = c["step"] == r.step
        ok = sel & c["valid"]
        values = c["value"][ok].astype(np.float64)
        assert r.n == sel.sum()
        assert r.valid == ok.sum()
        assert r.invalid == (sel & ~c["valid"]).sum() >= 2
        no_answer = np.array([t is None for t in c["raw_text"]])
        assert r.errors == (sel & ~c["valid"] & no_answer).sum()
        assert 0 < r.errors < r.invalid  # parse failures are invalid but not errors
        assert_value_stats(r, values)
        assert r.min == values.min()
        assert r.max == values.max()
        assert r.q25 == approx(np.percentile(values, 25))
        assert r.q75 == approx(np.percentile(values, 75))
        assert r.winner == approx(0.5 * np.mean(values) + 1.0)
        assert r.tokens_in == c["tokens_in"][sel].sum()
        assert r.tokens_out == c["tokens_out"][sel].sum()
        # the run's one p50 definition (metrics.jsonl's): nearest rank, upper edge of its bin
        bins = np.searchsorted(LATENCY_EDGES_MS, c["latency_ms"][sel])
        hist = np.bincount(bins, minlength=len(LATENCY_EDGES_MS) + 1).tolist()
        assert r.latency_p50_ms == ModelStepStats(latency_hist=hist).latency_quantile_ms(0.5)


@pytest.mark.parametrize("by", ["model", "group", "prompt_variant"])
def test_breakdown_matches_numpy(run: Run, by: str) -> None:
    c = run.cols
    rows = breakdown(run.path, by)  # type: ignore[arg-type]
    keys = sorted({str(k) for k in c[by]})
    assert len(keys) == 2
    assert [(r.step, r.key) for r in rows] == [(s, k) for s in (1, 2, 3) for k in keys]
    for r in rows:
        sel = (c["step"] == r.step) & (c[by].astype(str) == r.key)
        values = c["value"][sel & c["valid"]].astype(np.float64)
        assert (r.by, r.n, r.valid) == (by, sel.sum(), len(values))
        assert_value_stats(r, values)
        if by == "group":  # each group plays its own game
            assert r.winner == approx(0.5 * np.mean(values) + 1.0)
        else:
            assert r.winner is None


def test_breakdown_rejects_unknown_key(run: Run) -> None:
    with pytest.raises(ValueError, match="by must be one of"):
        breakdown(run.path, "agent_id")  # type: ignore[arg-type]


def test_step_comes_from_file_not_hive_directory(tmp_path: Path) -> None:
    # Directory names disagree with the rows' step column; the column must win.
    run = make_run(tmp_path / "run", rounds=2, step_dir="step={step}9")
    assert [r.step for r in round_table(run.path)] == [1, 2]
    assert {r.step for r in breakdown(run.path, "group")} == {1, 2}
    assert sorted(histogram_counts(run.path)) == [1, 2]


def test_defaults_without_config(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", rounds=1)
    assert load_game(run.path) == GameParams()
    (r,) = round_table(run.path)
    values = run.cols["value"][run.cols["valid"]].astype(np.float64)
    assert r.winner == approx(2 / 3 * np.mean(values))


def test_histogram_counts_match_numpy(run: Run) -> None:
    c = run.cols
    for bins in (10, 100):
        counts = histogram_counts(run.path, bins=bins)
        for step, got in counts.items():
            values = c["value"][(c["step"] == step) & c["valid"]].astype(np.float64)
            expected, _ = np.histogram(values, bins=bins, range=(0, 100))
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("path", ["missing", "empty"])
def test_missing_run_raises(tmp_path: Path, path: str) -> None:
    (tmp_path / "empty" / "steps").mkdir(parents=True)
    with pytest.raises(ReportError, match=r"does not exist|no step files"):
        round_table(tmp_path / path)
    with pytest.raises(ReportError):
        render_report(tmp_path / path, Console(record=True, width=200))


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000


def test_write_plots(run: Run, tmp_path: Path) -> None:
    paths = write_plots(run.path)
    names = [p.name for p in paths]
    assert names == ["round_1_hist.png", "round_2_hist.png", "round_3_hist.png", "convergence.png"]
    for p in paths:
        assert p.parent == run.path / "report"
        assert_png(p)
    custom = write_plots(run.path, tmp_path / "elsewhere")
    assert all(p.parent == tmp_path / "elsewhere" for p in custom)


def test_render_report(run: Run) -> None:
    console = Console(record=True, width=200)
    paths = render_report(run.path, console)
    text = console.export_text()
    for needle in ["Rounds of run", "By model", "By group", "By prompt variant", "model-b"]:
        assert needle in text
    assert str(run.path / "report") in text
    assert paths[-1] == run.path / "report" / "summary.json"
    for p in paths[:-1]:
        assert_png(p)
    summary = json.loads(paths[-1].read_text())
    assert summary["game"] == {
        "ratio": 0.5,
        "offset": 1.0,
        "low": 0.0,
        "high": 100.0,
        "scored": True,
        "label": "Guesses",
    }
    assert [r["step"] for r in summary["rounds"]] == [1, 2, 3]
    assert summary["rounds"][0]["mean"] == approx(round_table(run.path)[0].mean or 0.0)
    assert set(summary["breakdowns"]) == {"model", "group", "prompt_variant"}
    assert len(summary["breakdowns"]["group"]) == 6


def test_render_single_model_and_empty_round(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", rounds=2, models=("solo",), all_invalid_rounds=(2,))
    console = Console(record=True, width=200)
    paths = render_report(run.path, console)
    text = console.export_text()
    assert "By model" not in text  # only one model: table would repeat the rounds
    assert "By group" in text
    r2 = round_table(run.path)[1]
    assert (r2.valid, r2.mean, r2.winner, r2.std) == (0, None, None, None)
    summary = json.loads(paths[-1].read_text())
    assert summary["rounds"][1]["winner"] is None
    assert [p.name for p in paths[:-1]] == [
        "round_1_hist.png",
        "round_2_hist.png",
        "convergence.png",
    ]


def test_render_report_readable_at_80_columns(tmp_path: Path) -> None:
    long_model = "meta-llama/Llama-3.1-8B-Instruct"
    run = make_run(tmp_path / "run", game={"ratio": 0.5, "offset": 1.0}, models=(long_model, "b"))
    console = Console(record=True, width=80)
    render_report(run.path, console)
    text = console.export_text()
    assert "…" not in text  # nothing truncated by rich
    for needle in ["Guesses", "Cost", "By model", "By group", "By prompt variant", long_model]:
        assert needle in text
    lines = text.splitlines()
    assert max(len(line) for line in lines[:-1]) <= 80  # last line: the soft-wrapped path
    r1 = round_table(run.path)[0]
    row = next(line.split() for line in lines if line.split()[:2] == ["1", str(r1.n)])
    assert row == [
        "1",
        str(r1.n),
        str(r1.valid),
        str(r1.invalid),
        str(r1.errors),
        f"{r1.mean:.2f}",
        f"{r1.median:.2f}",
        f"{r1.std:.2f}",
        f"{r1.winner:.2f}",
    ]
    assert f"{r1.tokens_in:,}" in text
    assert f"{r1.latency_p50_ms:.2f}" in text


def test_tables_fit_80_columns_at_million_agent_scale() -> None:
    big = RoundStats(
        step=100,
        n=1_000_000,
        valid=999_999,
        invalid=1_000_000,
        errors=1_000_000,
        mean=100.0,
        median=100.0,
        std=50.0,
        min=0.0,
        max=100.0,
        q25=25.0,
        q75=75.0,
        winner=100.0,
        tokens_in=123_456_789_012,
        tokens_out=12_345_678_901,
        latency_p50_ms=123_456.78,
    )
    row = BreakdownRow(100, "group", "12345", 1_000_000, 999_999, 100.0, 100.0, 50.0, 100.0)
    console = Console(record=True, width=80)
    for table in (guesses_table([big]), cost_table([big]), breakdown_table("group", [row])):
        console.print(table)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "  100  1000000   999999  1000000  1000000  100.00  100.00   50.00  100.00" in text
    assert "123,456,789,012" in text
    assert "123456.78" in text
