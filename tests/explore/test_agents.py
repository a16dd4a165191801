"""AgentIndex: filters, sorting, paging and export checked against pyarrow."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from megasim.explore.agents import AgentIndex, AgentIndexCache, completed_step
from megasim.explore.filters import FilterError, parse_filter
from megasim.store.run_dir import RunDirectory
from tests.studio.conftest import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), "ix", size=2000, rounds=2)


def test_page_matches_an_independent_filter(run: Path) -> None:
    index = AgentIndex(run, completed_step(run))
    assert index.step == 2
    assert index.rows == 2000
    filters = [parse_filter("age>=40"), parse_filter("education=PhD|bachelor")]
    total, rows = index.page(filters, sort="value", descending=True, offset=0, limit=30)
    population = pq.read_table(run / "population.parquet")
    decisions = RunDirectory(run).read_decisions(2)
    mask = pc.and_(
        pc.greater_equal(population["age"], 40),
        pc.is_in(population["education"], value_set=pc.cast(["PhD", "bachelor"], "string")),
    )
    expected_ids = set(population.filter(mask)["agent_id"].to_pylist())
    assert total == len(expected_ids)
    assert len(rows) == 30
    assert {r["agent_id"] for r in rows} <= expected_ids
    values = dict(
        zip(decisions["agent_id"].to_pylist(), decisions["value"].to_pylist(), strict=True)
    )
    top = sorted((values[i] for i in expected_ids if values[i] is not None), reverse=True)[:30]
    assert [r["value"] for r in rows] == top


def test_text_search_validity_and_null_filters(run: Path) -> None:
    index = AgentIndex(run, 2)
    assert index.count([parse_filter("raw_text~SURROGATE")]) == 2000  # case-insensitive
    assert index.count([parse_filter("valid=false")]) == 0
    assert index.count([parse_filter("error=null")]) == 2000


def test_bad_filters_name_the_problem(run: Path) -> None:
    index = AgentIndex(run, 2)
    with pytest.raises(FilterError, match="no column 'nope'"):
        index.count([parse_filter("nope=1")])
    with pytest.raises(FilterError, match="not a number"):
        index.count([parse_filter("age>=old")])
    with pytest.raises(FilterError, match="cannot read filter"):
        parse_filter('age"; DROP TABLE agents; --=1')
    with pytest.raises(FilterError, match="cannot sort"):
        index.page([], sort="age; DROP TABLE agents")
    assert index.count([parse_filter("education=x' OR '1'='1")]) == 0  # bound, not spliced


def test_export_writes_every_match(run: Path, tmp_path: Path) -> None:
    index = AgentIndex(run, 2)
    filters = [parse_filter("model=quick")]
    expected = index.count(filters)
    csv_rows = pacsv.read_csv(index.export(filters, "age", False, "csv", tmp_path / "a.csv"))
    parquet = pq.read_table(index.export(filters, None, False, "parquet", tmp_path / "a.parquet"))
    assert csv_rows.num_rows == parquet.num_rows == expected > 500  # more than one page
    assert set(parquet["model"].to_pylist()) == {"quick"}


def test_cache_reuses_and_follows_new_steps(run: Path) -> None:
    cache = AgentIndexCache(keep=1)
    first = cache.get(run)
    assert cache.get(run) is first
    assert cache.get(run, 1).step == 1
