"""Run orchestration: config -> population -> run directory -> runtime -> scenario loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.metadata
import os
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from megasim.config import (
    ConfigError,
    SimulationConfig,
    apply_overrides,
    format_validation_error,
    read_yaml,
)
from megasim.monitor import RunMonitor, StopRequestedError
from megasim.population.sampling import sample_population
from megasim.runtime.base import ProgressFn, Runtime
from megasim.runtime.checkpoint import CheckpointStore
from megasim.runtime.local import LocalRuntime, models_used
from megasim.scenarios import get_scenario
from megasim.scenarios.base import Scenario
from megasim.simulation import Simulation, StepListener, StepOutcome
from megasim.store.run_dir import RunDirectory, RunDirectoryError
from megasim.store.run_lock import RunLock


@dataclass(frozen=True, slots=True)
class RunResult:
    run_dir: RunDirectory
    steps: list[StepOutcome]
    stopped: bool = False  # ended by a stop command at a step boundary: resumable


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("megasim", "numpy", "pyarrow", "pydantic", "xllamacpp"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def read_population_file(path: Path, defaults: dict[str, str]) -> pa.Table:
    """A population sampled earlier (``megasim population sample``), possibly with
    LLM-written backgrounds; missing ``model``/``prompt_variant`` columns get defaults."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"population_file: cannot read {path}: {exc}") from exc
    missing = [c for c in ("agent_id", "group") if c not in table.column_names]
    if missing:
        raise ConfigError(f"population_file: {path} lacks columns {missing}")
    for name, value in defaults.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows))
    return table


def build_population(config: SimulationConfig) -> pa.Table:
    """Sample (or read) the population and check it against the models and scenario."""
    assert config.default_model is not None  # set by the config validator
    defaults = {"model": config.default_model, "prompt_variant": "P1"}
    if config.population is not None:
        table = sample_population(config.population, seed=config.seed, defaults=defaults)
    else:
        assert config.population_file is not None  # one of the two, by validation
        table = read_population_file(Path(config.population_file), defaults)
    if config.force_model is not None:
        index = table.column_names.index("model")
        table = table.set_column(index, "model", pa.array([config.force_model] * table.num_rows))
    used = models_used(table)
    unknown = sorted(used - set(config.models))
    if unknown:
        raise ConfigError(
            f"population.attributes.model: agents use models {unknown} that are not "
            f"configured under models (configured: {sorted(config.models)})"
        )
    column = config.activity.column
    if column is not None:
        if column not in table.column_names:
            raise ConfigError(f"activity.column: the population has no column {column!r}")
        kind = table.column(column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise ConfigError(f"activity.column: {column!r} must hold numbers in [0, 1]: {kind}")
    problems = get_scenario(config.scenario).check_population(table)
    if problems:
        raise ConfigError("population: " + "; ".join(problems))
    return table


def make_runtime(config: SimulationConfig, population: pa.Table, run_dir: RunDirectory) -> Runtime:
    """The configured runtime; Ray is imported only when asked for."""
    if config.runtime.kind == "ray":
        from megasim.runtime.ray_runtime import RayRuntime

        return RayRuntime(config, population, run_dir)
    return LocalRuntime(config, population, run_dir)


async def run_simulation(
    config: SimulationConfig,
    progress: ProgressFn | None = None,
    on_step: StepListener | None = None,
    run_id: str | None = None,
    preflight: Mapping[str, Any] | None = None,
) -> RunResult:
    """Play a configured scenario to the end; every decision lands in the run directory.
    ``preflight``: the endpoint checks made before the start, kept as preflight.json."""
    out = Path(config.out_dir)
    if run_id is not None:  # before the population is sampled, which may take a while
        RunDirectory.check_new(out, run_id, field="--run-id")
    population = build_population(config)
    if run_id is None:
        run_dir = RunDirectory.create_unique(out, config.name)
    else:
        run_dir = RunDirectory.create(out, run_id, field="--run-id")
    with RunLock(run_dir.path):  # one driver per run directory
        run_dir.write_config(config.model_dump(mode="json"), versions())
        run_dir.write_population(population)
        if preflight is not None:
            from megasim.model.preflight import write_report

            write_report(run_dir.path / "preflight.json", preflight)
        origin = os.environ.get("MEGASIM_ORIGIN", "command line")  # the studio sets its own
        run_dir.append_event(
            "start", agents=population.num_rows, runtime=config.runtime.kind, origin=origin
        )
        return await _execute(config, population, run_dir, progress, on_step, resume=None)


def load_run_config(run_path: Path, overrides: Mapping[str, Any] | None = None) -> SimulationConfig:
    """The resolved config a run directory was started with; ``overrides`` as the CLI's
    flags (``megasim resume --runtime/--shards/--address``), see ``apply_overrides``."""
    run_dir = RunDirectory(run_path)
    if not run_dir.config_path.is_file():
        if (run_path / "steps").is_dir():  # created, then killed before its first write
            raise ConfigError(
                f"{run_path}: the run was killed before it wrote its config.yaml: nothing "
                "to resume; delete the folder and start the run again"
            )
        raise ConfigError(f"{run_path}: not a run directory (no config.yaml)")
    data = read_yaml(run_dir.config_path)  # unreadable or not YAML: a ConfigError
    data.pop("versions", None)
    data = apply_overrides(data, overrides or {})
    try:
        return SimulationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(run_dir.config_path), exc, data)) from exc


def completed_steps(run_path: Path) -> int:
    """Steps a resume starts after: those of the latest complete checkpoint (0: none)."""
    latest = CheckpointStore(run_path).latest()
    return latest[0] if latest else 0


async def resume_simulation(
    run_path: Path,
    progress: ProgressFn | None = None,
    on_step: StepListener | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunResult:
    """Continue a run from its last complete checkpoint (or from the start if it has none).

    Decisions of steps after the checkpoint (a step interrupted mid-way) are discarded and
    rerun, so none is lost and none counted twice. With scripted and surrogate models the
    seeds make the rerun identical; a real LLM resamples the rerun step (merged calls
    assign samples in arrival order), unless the response cache holds its answers.
    """
    run_dir = RunDirectory(run_path)
    config = load_run_config(run_path, overrides)
    with RunLock(run_path):  # before anything is deleted: a live driver may own it
        try:
            population = run_dir.read_population()
        except (OSError, pa.ArrowInvalid) as exc:  # damaged: nothing to resume with
            raise RunDirectoryError(f"{run_dir.population_path}: cannot read: {exc}") from None
        latest = CheckpointStore(run_path).latest()
        done = latest[0] if latest else 0
        # read (and check) the checkpoint before anything is deleted
        driver = CheckpointStore(run_path).load_resumable(latest[1]) if latest else None
        for step_dir in (run_path / "steps").glob("step=*"):
            number = step_dir.name.split("=", 1)[1]
            if number.isdigit() and int(number) > done:
                shutil.rmtree(step_dir)
        history = driver["history"] if driver else []
        run_dir.rewrite_metrics([h["metrics"] | {"outcome": h["outcome"]} for h in history])
        runtime = config.runtime
        run_dir.append_event(
            "resumed",
            from_step=done,
            runtime=runtime.kind,
            shards=runtime.shards,
            address=runtime.address,
        )
        return await _execute(config, population, run_dir, progress, on_step, resume=latest)


def build_world(scenario: Scenario, config: SimulationConfig, population: pa.Table) -> Any:
    """The driver's environment. A setting the scenario cannot use (a ValueError or
    KeyError from its code: a missing column, a malformed data file) is a ConfigError
    naming the scenario, exit 2, instead of a traceback."""
    try:
        return scenario.build_env(config, population)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise ConfigError(f"scenario {scenario.name}: cannot build its environment: {exc}") from exc


async def _execute(
    config: SimulationConfig,
    population: pa.Table,
    run_dir: RunDirectory,
    progress: ProgressFn | None,
    on_step: StepListener | None,
    resume: tuple[int, Path] | None,
) -> RunResult:
    scenario = get_scenario(config.scenario)
    runtime = make_runtime(config, population, run_dir)
    monitor = RunMonitor(run_dir, runtime, population.num_rows, config.rounds)
    final = "failed"
    try:
        env = build_world(scenario, config, population)  # before any shard or actor starts
        await runtime.start()
        sim = Simulation(config, runtime, env, run_dir, monitor.wrap_progress(progress))
        if resume is not None:
            await runtime.restore(resume[1])
            sim.resume_from(sim.checkpoints.load_driver(resume[1]))
        sim.before_step(monitor.before_step)
        sim.on_step(monitor.after_step)
        if on_step is not None:
            sim.on_step(on_step)
        await monitor.start(sim.step_index)
        env.listener_tasks.on_error = lambda exc: run_dir.append_event(
            "listener_failed", reason=f"{type(exc).__name__}: {exc}"
        )
        try:
            await scenario.run(sim)
        except StopRequestedError as stop:
            final = "stopped"
            run_dir.append_event("stopped", step=stop.step)
            return RunResult(run_dir=run_dir, steps=sim.history, stopped=True)
        finally:  # listeners fired in the background finish before the run ends
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(env.drain(), LISTENERS_DRAIN_S)
        final = "done"
        run_dir.append_event("done", steps=sim.step_index)
        return RunResult(run_dir=run_dir, steps=sim.history)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a full disk takes the event too; the error
            run_dir.append_event("failed", reason=f"{type(exc).__name__}: {exc}")  # says so
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise DiskFullError(run_dir.path, exc) from exc
        raise
    finally:
        try:
            await monitor.close(final)  # its last status.json
        except OSError:
            if final != "failed":
                raise  # otherwise the run's own error is the one to report
        finally:
            await runtime.close()  # always: Ray actors must not outlive the driver


LISTENERS_DRAIN_S = 60.0  # the longest a finished run waits for background listeners


def is_disk_full(exc: OSError) -> bool:
    """ENOSPC or EDQUOT, also from pyarrow (whose OSErrors carry no errno)."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc)


class DiskFullError(Exception):
    """The run's disk filled up. Checkpoints are atomic, so the last complete one is intact
    and ``megasim resume`` continues from it once there is space (or on another disk)."""

    def __init__(self, path: Path, cause: OSError) -> None:
        latest = CheckpointStore(path).latest()
        after = f"step {latest[0]}" if latest else "the start (no step was checkpointed)"
        super().__init__(
            f"{path}: no space left on device ({cause}); the run stopped and will continue "
            f"from {after}: free some space, or copy {path} to a bigger disk, then "
            f"`megasim resume {path}` (or the copy)"
        )
        self.path = path
