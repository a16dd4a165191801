"""Run configuration: YAML validated by pydantic; errors name the file and the field."""

from __future__ import annotations

import os
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

from megasim import yaml_strict
from megasim.model.config import (
    BUILTIN_BACKENDS,
    LocalModelConfig,
    ModelConfig,
    SurrogateModelConfig,
)
from megasim.population.spec import PopulationSpec
from megasim.scenarios.guess_prompt_spec import AnswerMode, Memory, PromptSpec, check_prompts
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
    prompts: dict[str, PromptSpec] = Field(
        default_factory=dict, description="prompts beyond the presets P1-P5, from parts"
    )
    parts: dict[str, str] = Field(default_factory=dict, description="reworded or new parts")
    memory: Memory = Field("last_winner", description="none | last_winner | full history")
    answer_mode: AnswerMode = Field(
        "structured", description="structured: one JSON call; extract: free text + extraction"
    )
    disclose: str | None = Field(
        None, description="population column whose counts per group the makeup part states"
    )

    @model_validator(mode="after")
    def _prompts_compose(self) -> GameConfig:
        check_prompts(self.prompts, self.parts)  # ValueError naming prompts.X / parts.X
        return self

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
_SECTION_SCENARIO = {"game": "guess_two_thirds", "chat": "chat_opinion"}


class SimulationConfig(BaseModel):
    """Everything a run needs; stored resolved in the run directory as config.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    scenario: Literal["guess_two_thirds", "chat_opinion"] = "guess_two_thirds"
    seed: int = Field(0, ge=0, description="non-negative: numpy's seed sequences need it")
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

    @field_validator("game", "chat")
    @classmethod
    def _section_of_this_scenario(
        cls, section: GameConfig | ChatConfig, info: ValidationInfo
    ) -> GameConfig | ChatConfig:
        """Settings of another scenario are an error, not silently ignored (defaults pass:
        a stored config.yaml holds both sections)."""
        owner = _SECTION_SCENARIO[str(info.field_name)]
        scenario = info.data.get("scenario")
        if scenario is not None and scenario != owner and section != type(section)():
            raise ValueError(f"applies to scenario {owner} only; this run's scenario is {scenario}")
        return section

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


_RAY_ONLY = ("address", "cpus_per_shard", "placement", "shard_resources", "max_shard_restarts")
_KEYED_SCENARIOS = ("chat_opinion",)  # scenarios whose environment has keyed state
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
    if runtime.env_partitions != 1 and config.scenario not in _KEYED_SCENARIOS:
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
    """Parse a YAML mapping, turning every failure into a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read: {reason or exc}") from exc
    try:
        data = yaml_strict.load(text)  # a duplicate key is an error, as in population specs
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML{yaml_strict.describe(exc)}") from exc
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


def _from_config_dir(base: Path, value: object, absolute: bool) -> object:
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
    data["out_dir"] = _from_config_dir(base, data.get("out_dir", "runs"), absolute=False)
    if "population_file" in data:
        data["population_file"] = _from_config_dir(base, data["population_file"], True)
    models = data.get("models")
    if isinstance(models, dict):
        data["models"] = {
            name: {
                key: _from_config_dir(base, value, True) if key in ("path", "cache") else value
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
    try:
        return SimulationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, data)) from exc
