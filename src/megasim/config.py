"""Run configuration: YAML validated by pydantic; errors name the file and the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from megasim.model.config import BUILTIN_BACKENDS, LocalModelConfig, ModelConfig
from megasim.population.spec import PopulationSpec
from megasim.store.run_dir import RUN_ID_PATTERN, RUN_ID_RULE


class ConfigError(Exception):
    """A configuration problem a user can fix; the message names the file and field."""


class GameConfig(BaseModel):
    """The p-beauty contest: winner = ratio x mean + offset, guesses in [low, high]."""

    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(2 / 3, gt=0)
    offset: float = 0.0
    low: float = 0.0
    high: float = Field(100.0, validate_default=True)  # so that a lone `low: 150` is checked
    max_tokens: dict[str, int] = Field(
        default_factory=dict, description="per prompt variant; unset variants use defaults"
    )
    repair: bool = Field(True, description="one repair call when an answer is unusable")

    @field_validator("high")
    @classmethod
    def _bounds(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low")  # absent when low itself is invalid
        if low is not None and high <= low:
            raise ValueError(f"high ({high}) must be greater than low ({low})")
        return high


class ChatConfig(BaseModel):
    """The chat-room opinion scenario: rooms (groups) discuss ``statement``."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field("Cities should make public transport free for everyone.", min_length=1)
    window: int = Field(8, ge=1, le=200, description="recent room posts each agent reads")
    max_tokens: int = Field(96, ge=8, le=4096)


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


DEFAULT_MODELS: dict[str, ModelConfig] = {"smollm2": LocalModelConfig(backend="local")}


class SimulationConfig(BaseModel):
    """Everything a run needs; stored resolved in the run directory as config.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    scenario: Literal["guess_two_thirds", "chat_opinion"] = "guess_two_thirds"
    seed: int = 0
    rounds: int = Field(3, ge=1, le=10_000)
    game: GameConfig = Field(default_factory=GameConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
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
        parts.append(str(part))
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
    """Parse a YAML mapping, turning every failure into a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {exc}") from exc
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


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> SimulationConfig:
    data = apply_overrides(read_yaml(path), overrides or {})
    population_file = data.get("population_file")
    if isinstance(population_file, str) and not Path(population_file).is_absolute():
        data["population_file"] = str(path.parent / population_file)  # relative to the config
    try:
        return SimulationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, data)) from exc
