"""``megasim population backgrounds`` end to end (scripted models from a models file)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.population import load_population_spec, sample_population

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "populations"
MODELS = EXAMPLES / "backgrounds_models.yaml"
COLUMNS = [
    "background",
    "background_json",
    "background_status",
    "background_error",
    "background_model",
    "background_attempts",
]


@pytest.fixture
def pop(tmp_path: Path) -> Path:
    spec = load_population_spec(EXAMPLES / "census.yaml")
    table = sample_population(
        spec, seed=5, size=30, defaults={"model": "m", "prompt_variant": "P5"}
    )
    path = tmp_path / "pop.parquet"
    pq.write_table(table, path)
    return path


def cli(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["population", "backgrounds", *args], input=stdin)
    return result.exit_code, result.output


def test_end_to_end_with_a_scripted_models_file(pop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    before = pq.read_table(pop)
    code, output = cli(
        str(pop), "--model", "canned", "--models-config", str(MODELS), "--out", str(out), "--yes"
    )
    assert code == 0, output
    for text in ("agents to do: 30", "model calls:  ~33", "tokens:", "time:", "Backgrounds"):
        assert text in output
    assert pq.read_table(pop).equals(before)  # --out leaves the input alone
    table = pq.read_table(out)
    assert table.column_names == [*before.column_names, *COLUMNS]
    assert table.column("agent_id").to_pylist() == before.column("agent_id").to_pylist()
    rows = table.to_pylist()
    # three canned stories, cycled by agent and attempt: three agents get one each, everyone
    # else only ever sees stories already taken and ends rejected as a near-duplicate
    ok = [r for r in rows if r["background_status"] == "ok"]
    rejected = [r for r in rows if r["background_status"] == "rejected"]
    assert (len(ok), len(rejected)) == (3, 27)
    names = {json.loads(r["background_json"])["name"] for r in ok}
    assert names == {"Robin Hale", "Sam Okafor", "Alex Moreau"}
    for row in ok:
        assert row["background"].startswith("Name: ")
        assert " Personality: " in row["background"]
        assert " Story: " in row["background"]
        assert row["background_model"] == "canned"
    for row in rejected:
        assert row["background"] is None
        assert row["background_attempts"] == 3
        assert row["background_error"].count("near-duplicate") == 3
    assert "3 ok, 27 rejected, 0 pending" in output
    assert not (tmp_path / "out.parquet.backgrounds.jsonl").exists()  # all in the Parquet


def test_in_place_with_limit_then_resume(pop: Path) -> None:
    args = [str(pop), "--model", "canned", "--models-config", str(MODELS), "--yes"]
    code, output = cli(*args, "--limit", "10", "--retries", "0")
    assert code == 0, output
    table = pq.read_table(pop)
    statuses = table.column("background_status").to_pylist()
    assert statuses.count("pending") == 20
    assert statuses[:10] == ["ok", "ok", "ok"] + ["rejected"] * 7
    sidecar = pop.with_name("pop.parquet.backgrounds.jsonl")
    assert sidecar.exists()  # rows remain: the progress file stays
    code, output = cli(*args, "--retries", "0")
    assert code == 0, output
    assert "agents to do: 20" in output
    final = pq.read_table(pop)
    assert final.num_rows == 30
    assert sorted(final.column("agent_id").to_pylist()) == list(range(30))
    assert "pending" not in final.column("background_status").to_pylist()
    assert final.slice(0, 10).equals(table.slice(0, 10))  # finished rows were not redone
    assert not sidecar.exists()
    code, output = cli(*args)
    assert code == 0, output
    assert "nothing to do" in output


def test_confirmation_is_asked_without_yes(pop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    args = [str(pop), "--model", "canned", "--models-config", str(MODELS), "-o", str(out)]
    code, output = cli(*args, stdin="n\n")
    assert code == 1
    assert "Start?" in output
    assert not out.exists()
    code, output = cli(*args, stdin="y\n")
    assert code == 0, output
    assert out.exists()


def test_bad_models_config_names_file_and_field(pop: Path, tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(
        yaml.safe_dump({"models": {"mine": {"backend": "local", "parallel": 0}}}), "utf-8"
    )
    code, output = cli(str(pop), "--model", "mine", "--models-config", str(config), "--yes")
    assert code == 2
    assert f"{config}: models.mine.parallel: Input should be greater than or equal to 1" in (
        " ".join(output.split())
    )
    config.write_text(yaml.safe_dump({"mine": {"backend": "gpt"}}), "utf-8")  # plain mapping
    code, output = cli(str(pop), "--model", "mine", "--models-config", str(config), "--yes")
    assert code == 2
    assert f"{config}: mine.backend:" in output
    config.write_text("models: [", "utf-8")
    code, output = cli(str(pop), "--model", "mine", "--models-config", str(config), "--yes")
    assert code == 2
    assert "invalid YAML" in output


def test_unknown_and_surrogate_models_are_refused(pop: Path, tmp_path: Path) -> None:
    code, output = cli(str(pop), "--model", "gpt-99", "--yes")
    assert code == 2
    assert "unknown model 'gpt-99'" in output
    code, output = cli(str(pop), "--model", "surrogate", "--yes")
    assert code == 2
    assert "non-LLM stand-in" in " ".join(output.split())
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": {"fast": {"backend": "surrogate"}}}), "utf-8")
    code, output = cli(str(pop), "--model", "fast", "--models-config", str(config), "--yes")
    assert code == 2
    assert "surrogate backend" in output


def test_unreadable_population_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "pop.parquet"
    bad.write_text("not parquet")
    code, output = cli(str(bad), "--model", "scripted", "--yes")
    assert code == 2
    assert "cannot read" in output


@pytest.mark.slow
def test_bundled_local_model_writes_two_backgrounds(pop: Path, tmp_path: Path) -> None:
    small = tmp_path / "two.parquet"
    pq.write_table(pq.read_table(pop).slice(0, 2), small)
    code, output = cli(str(small), "--model", "local", "--retries", "1", "--yes", "--quiet")
    assert code == 0, output
    table = pq.read_table(small)
    assert table.num_rows == 2
    for row in table.to_pylist():
        assert row["background_status"] in ("ok", "rejected"), row
        assert row["background_json"], row  # the model's text is recorded either way
        assert row["background_model"] == "local"
        assert 1 <= row["background_attempts"] <= 2
        if row["background_status"] == "ok":
            assert row["background"].startswith("Name: ")
        else:
            assert row["background_error"]
