"""Bad-input campaign (issue 10): generated configs, population specs, CLI arguments and
damaged run directories. Every case must end in a clean result or a clear error (exit 2,
file and field named), never a traceback, and must leave existing files as they were.

Most cases call the loaders directly (fast); a sample goes through the real CLI (typer's
CliRunner, in-process). Counts: ``pytest -s`` prints them; docs/reliability.md has them.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import megasim.cli as cli
from megasim.config import ConfigError, load_config
from megasim.population import (
    PopulationSpecError,
    check_marginals,
    load_population_spec,
    parse_population_spec,
    sample_population,
)
from megasim.run import build_population
from tests.campaign.fuzz import CASES, clean_exit, digest, fuzz, mutate

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STAND_INS = ("scripted", "surrogate")


def guess_config(out: Path) -> dict[str, Any]:
    """A valid guess-game config that plays in milliseconds (stand-in models only)."""
    return {
        "name": "fz",
        "seed": 3,
        "rounds": 2,
        "game": {"ratio": 0.5, "offset": 5, "low": 0, "high": 100},
        "population": {
            "size": 24,
            "sampling": "exact",
            "groups": 2,
            "attributes": {
                "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P3": 0.5}},
                "model": {"dist": "categorical", "weights": {"s": 0.5, "q": 0.5}},
                "age": {"dist": "normal", "mean": 40, "std": 10, "min": 18, "max": 90},
            },
        },
        "models": {
            "s": {"backend": "scripted", "responses": ["10", "abc", "70"]},
            "q": {"backend": "surrogate", "latency_s": 0},
        },
        "runtime": {"kind": "local", "shards": 2},
        "out_dir": str(out),
    }


def chat_config(out: Path) -> dict[str, Any]:
    """A valid chat-room config (keyed state), stand-in model."""
    return {
        "name": "fzchat",
        "scenario": "chat_opinion",
        "rounds": 2,
        "chat": {"statement": "Fuzzing finds bugs.", "window": 3},
        "population": {"size": 12, "groups": 3},
        "models": {"s": {"backend": "surrogate"}},
        "runtime": {"env_partitions": 2},
        "out_dir": str(out),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch folder with the fixtures every part reads; counts printed at the end."""
    root = tmp_path_factory.mktemp("campaign")
    (root / "cfg.yaml").write_text(yaml.safe_dump(guess_config(root / "runs")))
    (root / "chat.yaml").write_text(yaml.safe_dump(chat_config(root / "runs")))
    spec = yaml.safe_load((EXAMPLES / "populations" / "census.yaml").read_text())
    spec["size"] = 200
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00name: x\n")
    (root / "empty.yaml").write_text("")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "folder").mkdir()
    yield root
    print("\nbad-input campaign cases:", dict(sorted(CASES.items())), sum(CASES.values()))


def assert_config_error(message: str, source: Path, touched: set[str] | None = None) -> None:
    """Every line names the file; for a well-formed YAML mapping (``touched`` given) also
    the field (``<file>: <field>: <problem>``), one of those the mutation edited."""
    assert message.strip()
    for line in message.splitlines():
        assert line.startswith(f"{source}: "), message
        if touched is not None:
            assert ": " in line[len(str(source)) + 2 :], message
    if touched:
        assert any(key in message for key in touched) or "<top level>" in message, (
            touched,
            message,
        )


FIELD_FIRST = re.compile(r"[\w.<>\[\]-]+: ")  # "<field>: <problem>"


def failure(
    call: Any, *args: Any, errors: tuple[type[Exception], ...], **kwargs: Any
) -> str | None:
    """The message of an expected error of ``call``, None if it succeeded; any other
    exception propagates (the test fails with its traceback)."""
    try:
        call(*args, **kwargs)
    except errors as exc:
        return str(exc)
    return None


def safe_to_play(config: Any) -> bool:
    """Small enough to build its population here (stand-in models; no model is loaded)."""
    size = config.population.size if config.population is not None else 0
    return size <= 2000 and all(m.backend in STAND_INS for m in config.models.values())


def load_or_fail(path: Path, touched: set[str] | None = None) -> Any:
    """load_config and build_population: a config, or a ConfigError naming file and field;
    anything else (a traceback for the user) fails the test."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert_config_error(str(exc), path, touched)
        return None
    if safe_to_play(config):
        problem = failure(build_population, config, errors=(ConfigError, PopulationSpecError))
        if problem is not None:
            assert FIELD_FIRST.match(problem), problem
            return None
    return config


# --- run configs ----------------------------------------------------------------------


YAML_NOISE = st.sampled_from(
    [": ", "- ", "{", "}", "[", "]", "&a ", "*a", "!!python/object ", "\t", "\n", "'", '"']
)


@fuzz(500)
@given(
    text=st.one_of(
        st.text(max_size=120),
        st.lists(YAML_NOISE | st.text(max_size=6), max_size=20).map("".join),
    )
)
def test_config_text_fuzz(work: Path, text: str) -> None:
    """Arbitrary text as a run config: a config or an error naming the file."""
    CASES["config text"] += 1
    path = work / "text.yaml"
    path.write_text(text, encoding="utf-8")
    load_or_fail(path)


@fuzz(100)
@given(raw=st.binary(max_size=200), cut=st.integers(0, 400))
def test_config_bytes_fuzz(work: Path, raw: bytes, cut: int) -> None:
    """Bytes (non-UTF-8 too) and truncated valid configs."""
    CASES["config bytes"] += 1
    path = work / "bytes.yaml"
    valid = (work / "cfg.yaml").read_bytes()
    path.write_bytes(raw if cut % 2 else valid[:cut])
    load_or_fail(path)


@fuzz(900)
@given(data=st.data(), chat=st.booleans())
def test_config_mutation_fuzz(work: Path, data: st.DataObject, chat: bool) -> None:
    """Structured edits of valid configs: each error names the file and an edited field."""
    CASES["config mutations"] += 1
    base = chat_config(work / "runs") if chat else guess_config(work / "runs")
    doc, touched = mutate(base, data)
    path = work / "mutated.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    load_or_fail(path, touched)


# --- population specs -------------------------------------------------------------------


@fuzz(400)
@given(data=st.data())
def test_population_spec_mutation_fuzz(work: Path, data: st.DataObject) -> None:
    """Edited census specs: a population (checked against its marginals) or an error
    naming the spec and a field."""
    CASES["population specs"] += 1
    base = yaml.safe_load((work / "spec.yaml").read_text())
    doc, _ = mutate(base, data, rounds=2)
    try:
        spec = parse_population_spec(doc, "spec.yaml")
    except PopulationSpecError as exc:
        problem = str(exc)
        assert problem.startswith("spec.yaml"), problem
        return
    seed = data.draw(st.integers(-5, 2**64 + 5))
    CASES["population specs sampled"] += 1
    size = min(spec.size, 300)
    problem = failure(sample_population, spec, seed=seed, size=size, errors=(PopulationSpecError,))
    if problem is not None:
        assert FIELD_FIRST.match(problem), problem
        return
    check_marginals(sample_population(spec, seed=seed, size=size), spec)


@fuzz(100)
@given(raw=st.binary(max_size=120) | st.text(max_size=120).map(str.encode))
def test_population_spec_file_fuzz(work: Path, raw: bytes) -> None:
    """Arbitrary files as population specs."""
    CASES["population spec files"] += 1
    path = work / "fuzzspec.yaml"
    path.write_bytes(raw)
    problem = failure(load_population_spec, path, errors=(PopulationSpecError,))
    assert problem is None or problem.startswith(str(path)), problem


# --- the CLI ------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-3, 30).map(str),
    st.sampled_from(["-9223372036854775809", "18446744073709551616", "1e3", "nan", "x", ""]),
)
ARG_FILES = ["cfg.yaml", "chat.yaml", "spec.yaml", "binary.yaml", "empty.yaml", "list.yaml"]
ARG_FILES += ["folder", "missing.yaml", "text.yaml", "mutated.yaml"]
OPTIONS: dict[str, dict[str, st.SearchStrategy[str] | None]] = {
    "run": {
        "--agents": NUMBERS,
        "--rounds": NUMBERS,
        "--seed": NUMBERS,
        "--shards": NUMBERS,
        "--model": st.sampled_from(["s", "q", "surrogate", "scripted", "nope", ""]),
        "--runtime": st.sampled_from(["local", "Local", "ray2", "", "kubernetes"]),
        "--run-id": st.sampled_from(["ok1", "../up", "/abs", "a/b", ".hidden", "", "x" * 200]),
        "--out": st.sampled_from(["out", "cfg.yaml", "folder", "/proc/none", ""]),
        "--quiet": None,
        "--no-preflight": None,
    },
    "resume": {
        "--runtime": st.sampled_from(["local", "ray2", ""]),
        "--shards": NUMBERS,
        "--quiet": None,
    },
    "report": {"--out": st.sampled_from(["plots", "cfg.yaml", "/proc/none"])},
    "population sample": {
        "-o": st.sampled_from(["pop.parquet", "folder", "cfg.yaml", "/proc/none/p.parquet", ""]),
        "--seed": NUMBERS,
        "--size": NUMBERS,
        "--variant": st.sampled_from(["P1", "P9", ""]),
        "--tolerance": st.sampled_from(["0.02", "-1", "nan", "2", "x"]),
        "--check": None,
    },
}
POSITIONAL = {
    "run": st.sampled_from([*ARG_FILES, "cfg.yaml", "chat.yaml"]),
    "resume": st.sampled_from(["RUN", "RUN", "folder", "cfg.yaml", "missing"]),
    "report": st.sampled_from(["RUN", "RUN", "folder", "cfg.yaml", "missing"]),
    "population sample": st.sampled_from([*ARG_FILES, "spec.yaml", "spec.yaml"]),
}


@pytest.fixture(scope="module")
def finished_run(work: Path) -> Path:
    """A finished two-round run (two shards) that resume and report cases copy."""
    result = runner.invoke(
        cli.app,
        ["run", str(work / "cfg.yaml"), "--run-id", "base", "--quiet", "--no-preflight"],
    )
    assert result.exit_code == 0, result.output
    return work / "runs" / "base"


@fuzz(80)
@given(data=st.data(), command=st.sampled_from(sorted(OPTIONS)))
def test_cli_argument_fuzz(
    work: Path, finished_run: Path, data: st.DataObject, command: str
) -> None:
    """Generated command lines: exit 0, 1 or 2 without a traceback; input files and other
    runs untouched (a run's own report/ folder is the only thing ``report`` writes)."""
    CASES[f"cli {command}"] += 1
    case = work / "cli"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    for name in ARG_FILES:
        if (work / name).is_file():
            shutil.copy(work / name, case / name)
    (case / "folder").mkdir()
    shutil.copytree(finished_run, case / "RUN")
    before = digest(case, skip=("RUN",))
    run_before = digest(case / "RUN", skip=("report",))
    argv = [*command.split(), str(case / data.draw(POSITIONAL[command]))]
    options = OPTIONS[command]
    for name in data.draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        value = options[name]
        argv += [name] if value is None else [name, data.draw(value)]
    if command == "run" and "--run-id" not in argv:
        argv += ["--run-id", "r"]
    if command in ("run", "population sample") and not any(o in argv for o in ("--out", "-o")):
        argv += ["-o" if command != "run" else "--out", "out"]
    cwd = Path.cwd()
    os.chdir(case)  # relative paths land in the case folder
    try:
        result = runner.invoke(cli.app, argv)
    finally:
        os.chdir(cwd)
    clean_exit(result)
    after = digest(case, skip=("RUN",))
    assert {k: v for k, v in after.items() if k in before} == before, argv  # inputs untouched
    if command != "resume":
        assert digest(case / "RUN", skip=("report",)) == run_before, argv


# --- damaged run directories ---------------------------------------------------------------


def damage(path: Path, how: str, rng: random.Random) -> None:
    """Damage one file the way a crash, a full disk or a stray edit would."""
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: rng.randrange(max(1, len(raw)))])
    elif how == "garbage":
        path.write_bytes(rng.randbytes(rng.randrange(1, 64)))
    elif how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "json":
        path.write_text(rng.choice(["{}", "[]", "null", '{"step": "x"}', '{"agent_id": 1}']))
    else:  # flip bytes in the middle
        data = bytearray(raw)
        for _ in range(4):
            if data:
                data[rng.randrange(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))


HOW = ["truncate", "garbage", "delete", "empty", "json", "flip"]


@fuzz(60)
@given(data=st.data(), command=st.sampled_from(["report", "resume", "resume", "studio-read"]))
def test_damaged_run_directory_fuzz(
    work: Path, finished_run: Path, data: st.DataObject, command: str
) -> None:
    """One to three damaged files of a finished run, then ``report`` (read-only: nothing
    but report/ may change) or ``resume``: exit 0 or 2 naming the damaged run, never a
    traceback."""
    CASES[f"run dir {command}"] += 1
    run = work / "damaged"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(finished_run, run)
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    targets = data.draw(st.lists(st.sampled_from(files), min_size=1, max_size=3, unique=True))
    for name in targets:
        damage(run / name, data.draw(st.sampled_from(HOW)), rng)
    before = digest(run, skip=("report",))
    if command == "studio-read":  # the readers every tool shares
        from megasim.run import completed_steps, load_run_config

        problem = failure(load_run_config, run, errors=(ConfigError,))
        assert problem is None or str(run) in problem, problem
        completed_steps(run)
        assert digest(run) == before
        return
    result = runner.invoke(
        cli.app, [command, str(run), *(["--quiet"] if command == "resume" else [])]
    )
    clean_exit(result, allowed=(0, 2))
    if result.exit_code == 2:
        assert str(run) in result.output.replace("\n", ""), (targets, result.output)
    if command == "report":
        assert digest(run, skip=("report",)) == before, targets


@fuzz(60)
@given(data=st.data())
def test_damaged_population_file_fuzz(work: Path, data: st.DataObject) -> None:
    """A config whose population_file is damaged: exit 2 naming the file, no traceback."""
    CASES["population_file"] += 1
    case = work / "popfile"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    pop = case / "pop.parquet"
    table = sample_population(
        parse_population_spec(yaml.safe_load((work / "spec.yaml").read_text()), "spec"),
        seed=1,
        defaults={"model": "s", "prompt_variant": "P1"},
    )
    import pyarrow.parquet as pq

    pq.write_table(table, pop)
    damage(pop, data.draw(st.sampled_from(HOW)), random.Random(data.draw(st.integers(0, 999))))
    config = guess_config(case / "runs") | {"population_file": "pop.parquet", "rounds": 1}
    del config["population"]
    config["models"] = {name: {"backend": "scripted"} for name in ("smollm2-360m", "qwen2.5-0.5b")}
    (case / "cfg.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(cli.app, ["run", str(case / "cfg.yaml"), "--quiet", "--no-preflight"])
    clean_exit(result, allowed=(0, 2))
    if result.exit_code == 2:
        assert "population_file" in result.output, result.output


def test_the_campaign_is_real(work: Path) -> None:
    """The checks can fail: a traceback and an unnamed error are caught."""
    with pytest.raises(AssertionError, match="traceback"):
        clean_exit(_raising())
    with pytest.raises(AssertionError):
        assert_config_error("no file here", work / "cfg.yaml")


def _raising() -> Any:
    """A CliRunner result of a command that raised (what a defect looks like)."""
    import typer

    app = typer.Typer()

    @app.command()
    def boom() -> None:
        raise KeyError("x")

    return runner.invoke(app, [])


def test_damaged_checkpoint_is_named_and_the_advice_works(work: Path, finished_run: Path) -> None:
    """A damaged latest checkpoint: exit 2 naming it; moved away as the message says, the
    resume continues from the one before and reruns the step (here: the last one)."""
    run = work / "advice"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(finished_run, run)
    (run / "checkpoints" / "step=2" / "driver.json").write_text('{"step": 2')
    result = runner.invoke(cli.app, ["resume", str(run), "--quiet"])
    clean_exit(result, allowed=(2,))
    assert "step=2/driver.json: damaged checkpoint" in result.output.replace("\n", "")
    shutil.move(run / "checkpoints" / "step=2", work / "moved-away")
    result = runner.invoke(cli.app, ["resume", str(run), "--quiet"])
    clean_exit(result, allowed=(0,))
    assert (run / "checkpoints" / "step=2" / "driver.json").is_file()


def test_a_run_killed_before_its_config_says_so(work: Path) -> None:
    """Killed between creating its folder and writing config.yaml: resume says there is
    nothing to resume and what to do (not 'not a run directory')."""
    run = work / "runs" / "early"
    (run / "steps").mkdir(parents=True, exist_ok=True)
    result = runner.invoke(cli.app, ["resume", str(run)])
    clean_exit(result, allowed=(2,))
    assert "killed before it wrote its config.yaml" in result.output.replace("\n", " ")
