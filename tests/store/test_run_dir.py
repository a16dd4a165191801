"""Tests for megasim.store.run_dir.RunDirectory: layout, atomic writes, JSON lines."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from megasim.store.run_dir import RunDirectory, RunDirectoryError, new_run_id
from megasim.store.schema import DECISION_COLUMNS, DECISION_SCHEMA


def _decisions(step: int, shard: int, n: int = 3) -> dict[str, list[Any]]:
    """One shard's decisions; the last agent gave an unparseable answer."""
    ids = list(range(shard * 100, shard * 100 + n))
    return {
        "step": [step] * n,
        "agent_id": ids,
        "shard": [shard] * n,
        "group": [i % 2 for i in ids],
        "model": ["smollm2"] * n,
        "prompt_variant": ["P1" if i % 2 else "P3" for i in ids],
        "prompt_id": ["abc123"] * n,
        "raw_text": [*(f"{10 + i}" for i in range(n - 1)), "no idea"],
        "value": [*(float(10 + i) for i in range(n - 1)), None],
        "valid": [*([True] * (n - 1)), False],
        "tokens_in": [50] * n,
        "tokens_out": [3] * n,
        "latency_ms": [12.5] * n,
        "error": [*([None] * (n - 1)), "no number in answer"],
        "text": [None] * n,
    }


@pytest.fixture
def run(tmp_path: Path) -> RunDirectory:
    return RunDirectory.create(tmp_path / "runs", "test-run")


# --- layout ----------------------------------------------------------------------------


def test_create_makes_the_layout(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", "r1")  # parents are created
    assert run.path == tmp_path / "runs" / "r1"
    assert (run.path / "steps").is_dir()
    assert run.config_path == run.path / "config.yaml"
    assert run.population_path == run.path / "population.parquet"
    assert run.metrics_path == run.path / "metrics.jsonl"
    assert run.events_path == run.path / "events.jsonl"
    assert run.shard_file(3, 7) == run.path / "steps" / "step=3" / "shard=7.parquet"


def test_create_fails_if_the_run_exists(run: RunDirectory) -> None:
    (run.path / "keep.txt").write_text("earlier run")
    with pytest.raises(RunDirectoryError, match=r"already exists.*megasim resume"):
        RunDirectory.create(run.path.parent, run.path.name)
    with pytest.raises(RunDirectoryError, match="--run-id: a run"):
        RunDirectory.check_new(run.path.parent, run.path.name, field="--run-id")
    assert (run.path / "keep.txt").read_text() == "earlier run"  # untouched


def test_create_fails_on_an_existing_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "r1").mkdir()
    with pytest.raises(RunDirectoryError):
        RunDirectory.create(tmp_path, "r1")
    assert not (tmp_path / "r1" / "steps").exists()


@pytest.mark.parametrize(
    "run_id", ["../escape", "/tmp/abs", "a/b", "..", ".", ".hidden", "", "x" * 129, "a b", "é"]
)
def test_run_ids_that_are_not_one_plain_folder_are_refused(tmp_path: Path, run_id: str) -> None:
    base = tmp_path / "runs"
    with pytest.raises(RunDirectoryError, match=r"--run-id: .* is not a valid run id"):
        RunDirectory.create(base, run_id, field="--run-id")
    assert not base.exists()
    assert sorted(tmp_path.iterdir()) == []  # nothing created anywhere near


def test_valid_run_ids_are_accepted(tmp_path: Path) -> None:
    for run_id in ("r1", "guess_two_thirds-20261124-031819-4825", "A.b-c_d", "x" * 128):
        assert RunDirectory.create(tmp_path, run_id).path == tmp_path / run_id


def test_create_unique_never_reuses(tmp_path: Path) -> None:
    paths = {RunDirectory.create_unique(tmp_path, "same").path for _ in range(3)}
    assert len(paths) == 3  # same name, same second, same pid: suffixed
    assert all(p.parent == tmp_path and p.name.startswith("same-") for p in paths)


def test_new_run_id() -> None:
    run_id = new_run_id("guess")
    assert run_id.startswith("guess-")
    assert len(run_id.split("-")) == 4  # name, date, time, pid


# --- config and population -------------------------------------------------------------


def test_write_and_read_config_with_versions(run: RunDirectory) -> None:
    config = {"name": "guess", "seed": 42, "game": {"ratio": 2 / 3, "low": 0.0}, "tags": ["a"]}
    run.write_config(config, {"megasim": "0.1.0", "python": "3.12.1"})
    loaded = run.read_config()
    assert loaded == {**config, "versions": {"megasim": "0.1.0", "python": "3.12.1"}}
    assert list(loaded)[-1] == "versions"  # key order kept, versions last
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_config_overwrites(run: RunDirectory) -> None:
    run.write_config({"rounds": 3}, {})
    run.write_config({"rounds": 5, "name": "ünïcode"}, {"megasim": "x"})
    assert run.read_config() == {"rounds": 5, "name": "ünïcode", "versions": {"megasim": "x"}}


def test_population_round_trip(run: RunDirectory) -> None:
    table = pa.table(
        {
            "agent_id": pa.array([0, 1, 2], pa.int64()),
            "age": [31, 45, 62],
            "occupation": ["nurse", None, "pilot"],
            "weight": [0.5, 1.5, 2.0],
        }
    )
    run.write_population(table)
    assert run.read_population().equals(table)
    assert not (run.path / ".population.parquet.tmp").exists()


# --- decisions -------------------------------------------------------------------------


def test_write_decisions_has_the_decision_schema(run: RunDirectory) -> None:
    columns = _decisions(step=1, shard=0)
    path = run.write_decisions(1, 0, columns)
    assert path == run.shard_file(1, 0)
    table = pq.read_table(path)
    assert table.schema.equals(DECISION_SCHEMA)
    assert tuple(table.column_names) == DECISION_COLUMNS
    assert table.to_pydict() == columns
    rows = table.to_pylist()
    assert rows[0]["value"] == 10.0
    assert rows[-1]["value"] is None
    assert rows[-1]["valid"] is False
    assert rows[-1]["error"] == "no number in answer"


def test_write_decisions_leaves_no_tmp_files(run: RunDirectory) -> None:
    for step in (1, 2):
        for shard in (0, 1):
            run.write_decisions(step, shard, _decisions(step, shard))
    files = sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file())
    assert files == [
        "steps/step=1/shard=0.parquet",
        "steps/step=1/shard=1.parquet",
        "steps/step=2/shard=0.parquet",
        "steps/step=2/shard=1.parquet",
    ]


def test_write_decisions_replaces_a_shard_file(run: RunDirectory) -> None:
    run.write_decisions(1, 0, _decisions(1, 0, n=5))
    run.write_decisions(1, 0, _decisions(1, 0, n=2))  # a retried shard rewrites its file
    assert pq.read_table(run.shard_file(1, 0)).num_rows == 2
    assert len(list(run.step_dir(1).iterdir())) == 1


def test_write_decisions_rejects_wrong_columns(run: RunDirectory) -> None:
    columns = _decisions(1, 0)
    del columns["valid"]
    with pytest.raises((KeyError, pa.ArrowException)):
        run.write_decisions(1, 0, columns)
    assert not run.shard_file(1, 0).exists()
    assert not run.step_dir(1).exists() or list(run.step_dir(1).iterdir()) == []


def test_whole_run_readable_by_duckdb(run: RunDirectory) -> None:
    for step in (1, 2, 3):
        for shard in (0, 1):
            run.write_decisions(step, shard, _decisions(step, shard, n=4))
    pattern = f"{run.path}/steps/*/*.parquet"
    rows = duckdb.sql(
        f"SELECT step, count(*) AS n, count(value) AS answered, sum(valid::INT) AS ok "
        f"FROM read_parquet('{pattern}', hive_partitioning=false) GROUP BY step ORDER BY step"
    ).fetchall()
    assert rows == [(1, 8, 6, 6), (2, 8, 6, 6), (3, 8, 6, 6)]
    described = duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{pattern}', hive_partitioning=false)"
    ).fetchall()
    assert tuple(row[0] for row in described) == DECISION_COLUMNS


def test_whole_run_readable_by_pyarrow(run: RunDirectory) -> None:
    for step in (1, 2):
        run.write_decisions(step, 0, _decisions(step, 0))
    dataset = ds.dataset(run.path / "steps", format="parquet", partitioning=None)
    table = dataset.to_table()
    assert table.schema.equals(DECISION_SCHEMA)
    assert sorted(table.column("step").to_pylist()) == [1, 1, 1, 2, 2, 2]


def test_read_decisions(run: RunDirectory) -> None:
    assert run.read_decisions().num_rows == 0
    assert run.read_decisions().schema.equals(DECISION_SCHEMA)
    for step in (1, 2):
        for shard in (0, 1):
            run.write_decisions(step, shard, _decisions(step, shard))
    everything = run.read_decisions()
    assert everything.num_rows == 12
    assert everything.schema.equals(DECISION_SCHEMA)
    second = run.read_decisions(2)
    assert set(second.column("step").to_pylist()) == {2}
    assert sorted(set(second.column("shard").to_pylist())) == [0, 1]
    assert run.read_decisions(9).num_rows == 0


# --- JSON lines ------------------------------------------------------------------------


def test_read_metrics_without_file(run: RunDirectory) -> None:
    assert run.read_metrics() == []


def test_append_and_read_metrics(run: RunDirectory) -> None:
    records = [
        {"step": 1, "mean": 33.3, "winner": 22.2, "groups": [{"group": 0, "winner": None}]},
        {"step": 2, "mean": 20.0, "winner": 13.3, "groups": []},
    ]
    for record in records:
        run.append_metrics(record)
    assert run.read_metrics() == records
    lines = run.metrics_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert all(json.loads(line) for line in lines)


def test_append_metrics_serialises_odd_values_as_text(run: RunDirectory) -> None:
    run.append_metrics({"step": 1, "path": Path("/tmp/x")})
    assert run.read_metrics() == [{"step": 1, "path": "/tmp/x"}]


def test_append_event(run: RunDirectory) -> None:
    before = time.time()
    run.append_event("run_start", agents=100, shards=2)
    run.append_event("step_end", step=1)
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    assert [e["event"] for e in events] == ["run_start", "step_end"]
    assert events[0]["agents"] == 100
    assert events[0]["shards"] == 2
    assert events[1]["step"] == 1
    assert before <= events[0]["time"] <= events[1]["time"] <= time.time()
    assert run.read_metrics() == []  # events and metrics are separate files
