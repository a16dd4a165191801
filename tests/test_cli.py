"""End-to-end: the CLI on scripted, surrogate and the real bundled model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from megasim.cli import app
from megasim.scenarios.guess_two_thirds import REPAIR_SEPARATOR
from megasim.store.run_dir import RunDirectory

runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def decisions(run_dir: Path) -> list[dict[str, object]]:
    table = RunDirectory(run_dir).read_decisions()
    rows = table.sort_by([("step", "ascending"), ("agent_id", "ascending")]).to_pylist()
    for row in rows:
        row.pop("latency_ms")
    return rows


def test_scripted_run_writes_every_decision(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    code, output = run_cli("run", str(cfg), "--run-id", "r1", "--quiet")
    assert code == 0, output
    run_dir = cfg.parent / "runs" / "r1"
    for name in ("config.yaml", "population.parquet", "metrics.jsonl", "events.jsonl"):
        assert (run_dir / name).is_file(), name
    rows = decisions(run_dir)
    assert len(rows) == 20 * 2
    # scripted answers cycle "10", "20", "abc" by (agent_id + step)
    for row in rows:
        expected = ["10", "20", "abc"][(int(row["agent_id"]) + int(row["step"])) % 3]  # type: ignore[call-overload]
        if expected == "abc":  # unusable: one repair call, which gets the same script line
            assert row["raw_text"] == f"abc{REPAIR_SEPARATOR}abc"
            assert str(row["prompt_id"]).endswith("+repair")
        else:
            assert row["raw_text"] == expected
        assert row["valid"] == (expected != "abc")
        assert row["value"] == (float(expected) if expected != "abc" else None)
        if expected == "abc":
            assert str(row["error"]).startswith("parse: ")
    assert "Rounds" in output
    code, output = run_cli("report", str(run_dir))
    assert code == 0, output
    assert (run_dir / "report" / "convergence.png").is_file()
    assert (run_dir / "report" / "round_1_hist.png").is_file()


def test_same_seed_same_results_scripted(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    assert run_cli("run", str(cfg), "--run-id", "a", "--quiet")[0] == 0
    assert run_cli("run", str(cfg), "--run-id", "b", "--quiet")[0] == 0
    runs = cfg.parent / "runs"
    assert decisions(runs / "a") == decisions(runs / "b")


@pytest.mark.slow
def test_surrogate_10k_agents_same_seed_same_results(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    args = ["run", str(cfg), "--model", "surrogate", "--agents", "10000", "--rounds", "3"]
    code, output = run_cli(*args, "--run-id", "s1", "--quiet")
    assert code == 0, output
    assert run_cli(*args, "--run-id", "s2", "--quiet")[0] == 0
    runs = cfg.parent / "runs"
    first = decisions(runs / "s1")
    assert len(first) == 30_000
    assert all(str(r["raw_text"]).startswith("[surrogate]") for r in first)
    assert all(r["valid"] for r in first)
    assert first == decisions(runs / "s2")
    # a different seed changes the answers
    assert run_cli(*args, "--seed", "8", "--run-id", "s3", "--quiet")[0] == 0
    assert decisions(runs / "s3") != first
    # the game converges towards 0 with the surrogate's level-k behaviour
    means = [
        sum(float(r["value"]) for r in first if r["step"] == s) / 10_000  # type: ignore[arg-type]
        for s in (1, 2, 3)
    ]
    assert means[0] > means[1] > means[2]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rounds": 0}, "rounds"),
        ({"round": 3}, "round"),
        ({"game": {"low": 10, "high": 5}}, "game"),
        ({"models": {"m": {"backend": "nope"}}}, "models.m"),
        ({"models": {"m": {"backend": "local", "parallel": 0}}}, "models.m.parallel"),
        ({"default_model": "ghost"}, "default_model"),
        (
            {"population": {"size": 5, "attributes": {"prompt_variant": {"dist": "zipf"}}}},
            "population.attributes.prompt_variant",
        ),
        (
            {
                "population": {
                    "size": 5,
                    "attributes": {
                        "prompt_variant": {"dist": "categorical", "weights": {"P9": 1.0}}
                    },
                }
            },
            "prompt variants",
        ),
        (
            {
                "population": {
                    "size": 5,
                    "attributes": {"model": {"dist": "categorical", "weights": {"gpt": 1.0}}},
                }
            },
            "population.attributes.model",
        ),
    ],
)
def test_bad_config_exits_2_naming_the_field(
    write_config: Callable[..., Path], overrides: dict[str, object], field: str
) -> None:
    cfg = write_config(**overrides)
    code, output = run_cli("run", str(cfg), "--quiet")
    assert code == 2, output
    assert field in output
    assert str(cfg) in output or "cfg.yaml" in output
    assert "Traceback" not in output


def test_unknown_model_flag_and_missing_file(write_config: Callable[..., Path]) -> None:
    code, output = run_cli("run", str(write_config()), "--model", "gpt-9", "--quiet")
    assert code == 2
    assert "--model" in output
    code, output = run_cli("run", "does-not-exist.yaml")
    assert code == 2
    assert "does-not-exist.yaml" in output


def test_report_on_missing_run_exits_2(tmp_path: Path) -> None:
    code, output = run_cli("report", str(tmp_path / "nothing"))
    assert code == 2
    assert "nothing" in output


@pytest.mark.slow
def test_real_bundled_model_one_round(write_config: Callable[..., Path]) -> None:
    """A real LLM (SmolLM2 via llama.cpp) answers; its text is recorded and parsed."""
    cfg = write_config(
        models={"smollm2": {"backend": "local", "parallel": 2}},
        population={
            "size": 4,
            "attributes": {"prompt_variant": {"dist": "constant", "value": "P1"}},
        },
    )
    code, output = run_cli("run", str(cfg), "--rounds", "1", "--run-id", "llm", "--quiet")
    assert code == 0, output
    rows = decisions(cfg.parent / "runs" / "llm")
    assert len(rows) == 4
    assert all(r["raw_text"] for r in rows)
    assert all(int(r["tokens_out"]) > 0 for r in rows)  # type: ignore[call-overload]
    # identical prompts are merged into one call: its prompt tokens are counted once, on
    # the first member, so per-row prompt tokens may be 0 but the total is not
    assert sum(int(r["tokens_in"]) for r in rows) > 0  # type: ignore[call-overload]
    assert all(r["error"] is None or str(r["error"]).startswith("parse:") for r in rows)
    assert any(r["valid"] for r in rows), [r["raw_text"] for r in rows]


def test_population_sample_then_run_from_file(tmp_path: Path) -> None:
    spec = Path(__file__).parents[1] / "examples" / "populations" / "occupation.yaml"
    pop = tmp_path / "pop.parquet"
    args = ("population", "sample", str(spec), "-o", str(pop), "--check", "--model", "s")
    code, output = run_cli(*args)
    assert code == 0, output
    assert "sampled 1,200 agents" in output
    assert "occupation" in output
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "population_file: pop.parquet\n"
        "models: {s: {backend: surrogate}}\n"
        f"out_dir: {tmp_path / 'runs'}\nrounds: 1\n"
    )
    code, output = run_cli("run", str(cfg), "--run-id", "p", "--quiet")
    assert code == 0, output
    population = RunDirectory(tmp_path / "runs" / "p").read_population()
    assert population.num_rows == 1200
    assert "occupation" in population.column_names
    assert set(population.column("model").to_pylist()) == {"s"}


def test_population_sample_bad_spec_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("size: 10\nattributes:\n  x: {dist: categorical, weights: {a: 0.5, b: 0.2}}\n")
    code, output = run_cli("population", "sample", str(spec), "-o", str(tmp_path / "p.parquet"))
    assert code == 2
    assert "attributes.x" in output
    assert "bad.yaml" in output


def test_resume_of_a_non_run_exits_2(tmp_path: Path) -> None:
    code, output = run_cli("resume", str(tmp_path))
    assert code == 2
    assert "not a run directory" in output


def test_resume_of_a_finished_run_via_cli(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    assert run_cli("run", str(cfg), "--run-id", "fin", "--quiet")[0] == 0
    run_dir = cfg.parent / "runs" / "fin"
    before = decisions(run_dir)
    code, output = run_cli("resume", str(run_dir), "--quiet")
    assert code == 0, output
    assert decisions(run_dir) == before


def test_summary_table_fits_80_columns_at_a_million_agents() -> None:
    from rich.console import Console

    from megasim.cli import summary_table
    from megasim.simulation import StepOutcome

    outcome = {"n": 1_000_000, "valid": 999_999, "mean": 31.49, "winner": 20.99}
    metrics = {"invalid": 1, "errors": 0, "tokens_in": 123_456_789, "tokens_out": 1, "wall_s": 9.74}
    console = Console(record=True, width=80)
    steps = [StepOutcome(step=1, outcome=outcome, metrics=metrics)]
    console.print(summary_table(steps, ("winner", "winner")))
    text = console.export_text()
    assert "20.99" in text
    assert "…" not in text
    assert "1000000" in text
    assert "123456790" in text
