"""Run configuration: YAML validated by pydantic; errors name the file and the field."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from megasim.activity import ActivitySettings
from megasim.model.config import (
    BUILTIN_BACKENDS,
    LocalModelConfig,
    ModelConfig,
    SurrogateModelConfig,
)
from megasim.plugins import (
    ScenarioLoadError,
    is_file_reference,
    load_scenario_class,
)
from megasim.population.spec import PopulationSpec
from megasim.population.yaml_input import read_yaml_file
from megasim.store.run_dir import RUN_ID_PATTERN, RUN_ID_RULE


class ConfigError(Exception):
    """A configuration problem a user can fix; the message names the file and field."""


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    shards: int = Field(1, ge=1, le=4096)
    address: str | None = Field(
        None, description="ray: None starts a local Ray; 'auto' or HOST:PORT joins a cluster"
    )
    cpus_per_shard: float = Field(1.0, ge=0, description="ray: CPUs reserved per shard actor")
    placement: Literal["spread", "pack"] = Field("spread", description="ray: shards over nodes")
    shard_resources: dict[int, dict[str, float]] = Field(
        default_factory=dict,
        description="ray: pin shard k with custom resources, e.g. {0: {node_a: 1}}",
    )
    max_shard_restarts: int = Field(3, ge=0, description="ray: restarts of a lost shard per step")
    env_partitions: int = Field(
        1,
        ge=1,
        le=1024,
        description="keyed environment state (chat rooms) split by key; ray: an actor each",
    )

    @field_validator("shard_resources")
    @classmethod
    def _pins_name_real_shards(
        cls, pins: dict[int, dict[str, float]], info: ValidationInfo
    ) -> dict[int, dict[str, float]]:
        shards: int | None = info.data.get("shards")  # absent when shards itself is invalid
        extra = sorted(k for k in pins if shards is not None and not 0 <= k < shards)
        if extra and shards is not None:
            raise ValueError(
                f"shards {extra} do not exist: runtime.shards is {shards} (shards 0-{shards - 1})"
            )
        for shard, resources in pins.items():
            if not resources or any(amount <= 0 for amount in resources.values()):
                raise ValueError(f"shard {shard}: give each pin at least one resource > 0")
        return pins


DEFAULT_MODELS: dict[str, ModelConfig] = {"smollm2": LocalModelConfig(backend="local")}
DEFAULT_SCENARIO = "guess_two_thirds"


class SimulationConfig(BaseModel):
    """Everything a run needs; stored resolved in the run directory as config.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    scenario: str = Field(
        DEFAULT_SCENARIO,
        min_length=1,
        description="a registered name, package.module:Class, or ./file.py:Class",
    )
    seed: int = Field(0, ge=0, description="non-negative: numpy's seed sequences need it")
    rounds: int = Field(3, ge=1, le=10_000)
    population: PopulationSpec | None = Field(
        None, description="sample personas from this spec at the start of the run"
    )
    population_file: str | None = Field(
        None, description="or read them from a Parquet file (megasim population sample)"
    )
    models: dict[str, ModelConfig] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    default_model: str | None = Field(None, description="for agents the population gives none")
    force_model: str | None = Field(None, description="every agent uses this model (--model)")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    activity: ActivitySettings = Field(
        default_factory=ActivitySettings,
        description="sparse activation: who acts each step (probability, column, schedule)",
    )
    out_dir: str = "runs"

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str) -> str:
        """The name starts every run id (``<name>-<time>-<pid>``), a folder in out_dir."""
        if len(name) > 100 or not re.fullmatch(RUN_ID_PATTERN, name):
            raise ValueError(f"{name!r} cannot start a run id ({RUN_ID_RULE}, at most 100)")
        return name

    @field_validator("default_model")
    @classmethod
    def _default_model_known(cls, name: str | None, info: ValidationInfo) -> str | None:
        models = info.data.get("models")  # absent when models itself is invalid
        if name is not None and models is not None and name not in models:
            known = ", ".join(sorted(models))
            raise ValueError(f"default_model {name!r} is not in models ({known})")
        return name

    @model_validator(mode="after")
    def _default_model_set(self) -> SimulationConfig:
        if (self.population is None) == (self.population_file is None):
            raise ValueError("population: give exactly one of population and population_file")
        if self.force_model is not None and self.force_model not in self.models:
            raise ValueError(f"force_model: {self.force_model!r} is not in models")
        if not self.models:
            raise ValueError("at least one model must be configured")
        if self.default_model is None:
            self.default_model = next(iter(self.models))
        return self

    # --- the scenario's own section -------------------------------------------------------
    @classmethod
    def model_validate(
        cls, obj: Any, *, strict: bool | None = None, **kwargs: Any
    ) -> SimulationConfig:
        """Validate with the scenario's own settings section: the scenario named in
        ``obj`` is found first (see megasim.plugins), and its ``section`` becomes a field
        of a config model made for it, so its errors name ``section.field`` like any
        other and an unknown key is still an error."""
        if cls is not SimulationConfig or not isinstance(obj, Mapping):
            return super().model_validate(obj, strict=strict, **kwargs)
        reference = obj.get("scenario", DEFAULT_SCENARIO)
        if not isinstance(reference, str) or not reference.strip():
            return super().model_validate(obj, strict=strict, **kwargs)  # a type error
        from megasim.config_sections import config_model, field_error, without_stale_sections

        try:
            model = config_model(reference)
            data = without_stale_sections(dict(obj), model)
        except ScenarioLoadError as exc:
            raise field_error("scenario", reference, str(exc)) from None
        if model is SimulationConfig:  # a scenario without settings of its own
            return super().model_validate(data, strict=strict, **kwargs)
        return model.model_validate(data, strict=strict, **kwargs)

    @property
    def scenario_settings(self) -> Any:
        """The scenario's validated settings (its ``section``), or None if it has none."""
        section = load_scenario_class(self.scenario).section
        return None if section is None else getattr(self, section)


def load_stored_config(path: Path) -> SimulationConfig:
    """A run directory's config.yaml (written resolved by the run itself, with the
    package versions it ran with, which are not settings)."""
    data = read_yaml(path)
    data.pop("versions", None)
    try:
        return SimulationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, data)) from exc


_RAY_ONLY = ("address", "cpus_per_shard", "placement", "shard_resources", "max_shard_restarts")
# settings every backend accepts but only LLM backends use (the stand-ins make no calls)
_SHARED = set(LocalModelConfig.model_fields) & set(SurrogateModelConfig.model_fields)
_CALL_SETTINGS = tuple(sorted(_SHARED - {"backend"}))


def inapplicable_settings(config: SimulationConfig) -> list[str]:
    """Harmless settings this run ignores, one ``field: why`` line each (the CLI prints
    them as warnings). Settings whose neglect would change what the user asked for are
    validation errors instead (another scenario's section, pins of shards that do not
    exist)."""
    notes: list[str] = []
    runtime, defaults = config.runtime, RuntimeConfig()
    if runtime.kind == "local":
        for name in _RAY_ONLY:
            if getattr(runtime, name) != getattr(defaults, name):
                notes.append(f"runtime.{name}: applies to kind ray only; ignored (kind local)")
    if runtime.env_partitions != 1 and not load_scenario_class(config.scenario).keyed_state:
        notes.append(
            f"runtime.env_partitions: scenario {config.scenario} has no keyed state; ignored"
        )
    for name, model in config.models.items():
        base = type(model).model_fields
        if model.backend in ("surrogate", "scripted"):
            for field in _CALL_SETTINGS:
                if getattr(model, field) != base[field].get_default(call_default_factory=True):
                    notes.append(
                        f"models.{name}.{field}: does not apply to backend {model.backend} "
                        "(a non-LLM stand-in makes no model calls); ignored"
                    )
        elif not model.merge and model.merge_window_s != base["merge_window_s"].default:
            notes.append(f"models.{name}.merge_window_s: merge is off; ignored")
    return notes


_DISCRIMINATORS = ("backend", "dist")  # union tags pydantic inserts into error locations


def _field_path(item: Any, data: object) -> str:
    """The dotted path as the user wrote it.

    Union tags pydantic inserts (``models.x.local.parallel``) are dropped by walking the
    input, and an unknown tag points at its key (``models.x.backend``).
    """
    parts: list[str] = []
    cur: object = data
    for part in item["loc"]:
        if isinstance(cur, dict):
            if part not in cur and any(cur.get(key) == part for key in _DISCRIMINATORS):
                continue  # a union tag, not a key of the input
            cur = cur.get(part)
        else:
            cur = None
        text = str(part)  # a key with a line break or blanks is shown quoted, on one line
        parts.append(text if text.isprintable() and text.strip() == text != "" else repr(text))
    if item["type"] == "union_tag_invalid":
        parts.append(str(item.get("ctx", {}).get("discriminator", "")).strip("'"))
    return ".".join(parts)


def format_validation_error(source: str, error: ValidationError, data: object = None) -> str:
    """One line per problem: ``<file>: <dotted.field>: <message>``."""
    lines = []
    for item in error.errors():
        field = _field_path(item, data) or "<top level>"
        lines.append(f"{source}: {field}: {item['msg']}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, turning every failure into a ConfigError naming the file (a
    duplicate key is an error, as in population specs)."""
    data = read_yaml_file(path, ConfigError, "invalid YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """CLI flags win over the file: agents, rounds, model, seed, out, runtime, shards,
    address (``megasim resume`` takes the last three)."""
    data = dict(data)
    if overrides.get("agents") is not None:
        if data.get("population_file") is not None:
            raise ConfigError(
                "--agents: a population_file has a fixed size; sample another with "
                "`megasim population sample SPEC --size N -o FILE`"
            )
        data["population"] = {**(data.get("population") or {}), "size": overrides["agents"]}
    for key, field in (("rounds", "rounds"), ("seed", "seed"), ("out", "out_dir")):
        if overrides.get(key) is not None:
            data[field] = overrides[key]
    flags = {"runtime": "kind", "shards": "shards", "address": "address"}
    if any(overrides.get(flag) is not None for flag in flags):
        runtime = dict(data.get("runtime") or {})
        for flag, field in flags.items():
            if overrides.get(flag) is not None:
                runtime[field] = overrides[flag]
        data["runtime"] = runtime
    model = overrides.get("model")
    if model is not None:
        models = dict(data.get("models") or {"smollm2": {"backend": "local"}})
        if model not in models:
            if model not in BUILTIN_BACKENDS:
                known = ", ".join(sorted({*models, *BUILTIN_BACKENDS}))
                raise ConfigError(f"--model: unknown model {model!r} (known: {known})")
            models[model] = {"backend": model}
        data["models"] = models
        data["default_model"] = model
        data["force_model"] = model
    return data


def from_config_dir(base: Path, value: object, absolute: bool) -> object:
    """A relative path string of the config file, made relative to the file's folder."""
    if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    joined = base / value
    return os.path.abspath(joined) if absolute else os.path.normpath(joined)


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """One rule: every relative path in a config file is relative to that file's folder.

    Files read during the run (``population_file``, a model's ``path`` and ``cache``) become
    absolute, so Ray actors and later resumes in another directory find them; ``out_dir``
    stays as short as it can (the driver makes it absolute before any actor sees it)."""
    data = dict(data)
    data["out_dir"] = from_config_dir(base, data.get("out_dir", "runs"), absolute=False)
    scenario = data.get("scenario")
    if isinstance(scenario, str) and is_file_reference(scenario):  # ./my_world.py:MyWorld
        path, _, attribute = scenario.strip().rpartition(":")
        data["scenario"] = f"{from_config_dir(base, path, absolute=True)}:{attribute}"
    if "population_file" in data:
        data["population_file"] = from_config_dir(base, data["population_file"], True)
    models = data.get("models")
    if isinstance(models, dict):
        data["models"] = {
            name: {
                key: from_config_dir(base, value, True) if key in ("path", "cache") else value
                for key, value in entry.items()
            }
            if isinstance(entry, dict)
            else entry
            for name, entry in models.items()
        }
    return data


def load_config(path: Path, overrides: Mapping[str, Any] | None = None) -> SimulationConfig:
    """Read, resolve paths (relative to the file), apply CLI flags (their paths are relative
    to the working directory) and validate; every problem is a ConfigError naming the file."""
    data = apply_overrides(resolve_paths(read_yaml(path), path.parent), overrides or {})
    from megasim.config_sections import resolve_section_paths

    try:
        data = resolve_section_paths(data, path.parent)
        return SimulationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, data)) from exc
