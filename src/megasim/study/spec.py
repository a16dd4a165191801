"""A study file: a base run config and a grid of settings; every combination is a cell.

Each cell is an ordinary run config (validated like ``megasim run``'s) whose run directory
is ``<study>/cells/<cell id>``. Cell ids are their index in the grid plus the values of the
dimensions that vary, so the same study file always gives the same cells, and a rerun can
tell finished cells from missing ones.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from megasim.config import (
    ConfigError,
    SimulationConfig,
    apply_overrides,
    format_validation_error,
    read_yaml,
    resolve_paths,
)
from megasim.scenarios.guess_prompt_spec import PRESETS, AnswerMode, Memory
from megasim.scenarios.guess_settings import GameConfig
from megasim.scenarios.guess_two_thirds import game_settings
from megasim.store.run_dir import RUN_ID_PATTERN, RUN_ID_RULE


class StudyError(Exception):
    """A study problem a user can fix; the message names the file and the field."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(gt=0)
    offset: float = 0.0


class Grid(BaseModel):
    """Values per dimension; absent dimensions keep the base config's setting."""

    model_config = ConfigDict(extra="forbid")

    model: list[str] | None = Field(None, min_length=1)
    prompt: list[str] | None = Field(None, min_length=1)
    rule: list[Rule] | None = Field(None, min_length=1)
    temperature: list[float] | None = Field(None, min_length=1)
    population: list[str] | None = Field(
        None, min_length=1, description="population files: .parquet (sampled) or .yaml (spec)"
    )
    agents: list[int] | None = Field(None, min_length=1)
    rounds: list[int] | None = Field(None, min_length=1)
    groups: list[int] | None = Field(None, min_length=1)
    seed: list[int] | None = Field(None, min_length=1)
    memory: list[Memory] | None = Field(None, min_length=1)
    answer_mode: list[AnswerMode] | None = Field(None, min_length=1)
    runtime: list[Literal["local", "ray"]] | None = Field(None, min_length=1)
    shards: list[int] | None = Field(None, min_length=1)


DIMENSIONS: tuple[str, ...] = tuple(Grid.model_fields)


class NamedGrid(Grid):
    """One of several grids of a study (``grids:``), with its own changes to the base
    config (deep-merged: mappings merge, other values replace)."""

    config: dict[str, Any] = Field(default_factory=dict)


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    base: str | None = Field(None, description="a run config file, relative to the study file")
    config: dict[str, Any] | None = Field(None, description="or an inline run config")
    out_dir: str = Field("studies", description="the study folder is OUT_DIR/NAME")
    grid: Grid = Field(default_factory=Grid)
    grids: dict[str, NamedGrid] | None = Field(
        None, description="several grids in one study, by name (each may change the config)"
    )
    asyncio_reference: bool = Field(
        False,
        description="measure plain asyncio (N coroutines awaiting the surrogate's latency) "
        "for each cell's agent count, so the report gives ratios, not only seconds",
    )
    breakdowns: list[str] = Field(
        default_factory=list, description="population columns the report gives means by"
    )

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if len(name) > 100 or not re.fullmatch(RUN_ID_PATTERN, name):
            raise ValueError(f"{name!r} is not a folder name ({RUN_ID_RULE})")
        return name

    @field_validator("grids")
    @classmethod
    def _grid_names(cls, grids: dict[str, NamedGrid] | None) -> dict[str, NamedGrid] | None:
        for name in grids or {}:
            if len(name) > 40 or not re.fullmatch(RUN_ID_PATTERN, name):
                raise ValueError(f"{name!r} cannot be part of a cell id ({RUN_ID_RULE})")
        return grids


@dataclass(frozen=True, slots=True)
class Cell:
    """One run of the study: its id, its settings (dimension -> value) and its config."""

    id: str
    index: int
    settings: dict[str, Any]
    config: SimulationConfig


@dataclass(frozen=True, slots=True)
class Study:
    source: Path
    spec: StudySpec
    folder: Path
    cells: list[Cell]

    @property
    def cells_dir(self) -> Path:
        return self.folder / "cells"

    def fingerprint(self) -> str:
        """What identifies the grid: cell ids and their resolved configs."""
        body = [[c.id, c.config.model_dump(mode="json")] for c in self.cells]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _label(dimension: str, value: Any) -> str:
    if dimension == "rule":
        text = f"r{value['ratio']:g}" + (f"o{value['offset']:g}" if value["offset"] else "")
    elif dimension == "population":
        text = Path(str(value)).stem
    elif dimension in ("model", "prompt", "memory", "answer_mode", "runtime"):
        text = str(value)
    else:
        short = {"temperature": "t", "agents": "n", "rounds": "R", "groups": "g", "seed": "s",
                 "shards": "k"}  # fmt: skip
        text = (
            f"{short[dimension]}{value:g}"
            if isinstance(value, float)
            else f"{short[dimension]}{value}"
        )
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:40]


def _prompt_population(source: Path, prompt: str, folder: Path) -> str:
    """A copy of a population file whose agents all use ``prompt`` (the file's own
    ``prompt_variant`` column, if any, is replaced)."""
    target = folder / "populations" / f"{source.stem}-{prompt}.parquet"
    if not target.exists():
        table = pq.read_table(source)
        column = pa.array([prompt] * table.num_rows)
        if "prompt_variant" in table.column_names:
            table = table.set_column(
                table.column_names.index("prompt_variant"), "prompt_variant", column
            )
        else:
            table = table.append_column("prompt_variant", column)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(target)
    return str(target)


def _apply(
    data: dict[str, Any], settings: dict[str, Any], base_dir: Path, folder: Path, write: bool
) -> dict[str, Any]:
    """The base config with one cell's settings (a deep copy; the base is untouched)."""
    data = copy.deepcopy(data)
    game = data.setdefault("game", {})
    if "population" in settings:
        path = (base_dir / settings["population"]).resolve()
        if path.suffix == ".parquet":
            data.pop("population", None)
            data["population_file"] = str(path)
        else:
            data.pop("population_file", None)
            data["population"] = read_yaml(path)
    if "model" in settings:
        data = apply_overrides(data, {"model": settings["model"]})
    if "temperature" in settings:
        names = [settings["model"]] if "model" in settings else list(data.get("models") or {})
        models = dict(data.get("models") or {"smollm2": {"backend": "local"}})
        for name in names or list(models):
            models[name] = {
                **models.get(name, {"backend": name}),
                "temperature": settings["temperature"],
            }
        data["models"] = models
    if "rule" in settings:
        game.update(settings["rule"])
    for key in ("memory", "answer_mode"):
        if key in settings:
            game[key] = settings[key]
    for key, field in (("runtime", "kind"), ("shards", "shards")):
        if key in settings:
            data["runtime"] = {**(data.get("runtime") or {}), field: settings[key]}
    for key in ("rounds", "seed"):
        if key in settings:
            data[key] = settings[key]
    for key, field in (("agents", "size"), ("groups", "groups")):
        if key in settings:
            if data.get("population") is None:
                raise ConfigError(f"grid.{key}: a population file has a fixed {field}; use a spec")
            data["population"] = {**data["population"], field: settings[key]}
    if "prompt" in settings:
        if data.get("population") is not None:
            pop = data["population"] = dict(data["population"])
            pop["attributes"] = {
                **(pop.get("attributes") or {}),
                "prompt_variant": {"dist": "categorical", "weights": {settings["prompt"]: 1.0}},
            }
        elif write:
            data["population_file"] = _prompt_population(
                Path(data["population_file"]), settings["prompt"], folder
            )
    data["out_dir"] = str(folder / "cells")
    return data


def load_study(path: Path, write: bool = True) -> Study:
    """Read and check a study file; every cell's config is validated before anything runs.
    ``write``: allowed to write derived population files (not in a dry run)."""
    raw = read_yaml(path)  # ConfigError naming the file
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise StudyError(format_validation_error(str(path), exc, raw)) from exc
    if (spec.base is None) == (spec.config is None):
        raise StudyError(f"{path}: base: give exactly one of base (a file) and config (inline)")
    if spec.base is not None:
        base_path = (path.parent / spec.base).resolve()
        try:
            base = resolve_paths(read_yaml(base_path), base_path.parent)
        except ConfigError as exc:
            raise StudyError(f"{path}: base: {exc}") from exc
    else:
        base = resolve_paths(dict(spec.config or {}), path.parent)
    folder = (path.parent / spec.out_dir / spec.name).resolve()
    if spec.grids is not None and spec.grid != Grid():
        raise StudyError(f"{path}: grids: give either grid or grids, not both")
    named: list[tuple[str | None, Grid, dict[str, Any]]] = [(None, spec.grid, base)]
    if spec.grids is not None:
        named = [
            (name, g, deep_merge(base, resolve_paths(g.config, path.parent)))
            for name, g in spec.grids.items()
        ]
    cells: list[Cell] = []
    for name, grid, config_data in named:
        for cell_id, settings in _combinations(grid, name, len(cells)):
            cells.append(_cell(path, spec, folder, config_data, cell_id, len(cells), settings,
                               write))  # fmt: skip
    return Study(path, spec, folder, cells)


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _combinations(grid: Grid, name: str | None, start: int) -> list[tuple[str, dict[str, Any]]]:
    """(cell id, settings) of every combination: index, grid name, varying values."""
    given = {d: v for d in DIMENSIONS if (v := getattr(grid, d)) is not None}
    values = {
        d: [v.model_dump() if isinstance(v, BaseModel) else v for v in vs]
        for d, vs in given.items()
    }
    varying = [d for d, vs in values.items() if len(vs) > 1]
    found = []
    for offset, combo in enumerate(itertools.product(*values.values())):
        settings = dict(zip(values, combo, strict=True))
        labels = [_label(d, settings[d]) for d in varying]
        found.append(("-".join([f"{start + offset:03d}", *([name] if name else []), *labels]),
                      settings))  # fmt: skip
    return found


def _cell(
    path: Path,
    spec: StudySpec,
    folder: Path,
    base: dict[str, Any],
    cell_id: str,
    index: int,
    settings: dict[str, Any],
    write: bool,
) -> Cell:
    """One cell's validated config; problems name the file, the cell and the field."""
    where = f"{path}: cell {cell_id}"
    try:
        data = _apply(base, settings, path.parent, folder, write)
        data["name"] = spec.name
        config = SimulationConfig.model_validate(data)
    except ConfigError as exc:
        raise StudyError(f"{where}: {exc}") from exc
    except ValidationError as exc:
        raise StudyError(format_validation_error(where, exc, data)) from exc
    if not isinstance(config.scenario_settings, GameConfig):  # grids vary the game's rules
        raise StudyError(
            f"{where}: scenario: a study runs the paper's guessing game (guess_two_thirds), "
            f"not {config.scenario}; run other scenarios with `megasim run`"
        )
    prompt = settings.get("prompt")
    if prompt is not None and prompt not in (*PRESETS, *game_settings(config).prompts):
        known = [*PRESETS, *game_settings(config).prompts]
        raise StudyError(f"{where}: grid.prompt: unknown prompt {prompt!r}; known: {known}")
    return Cell(cell_id, index, settings, config)
