"""Which model writes the backgrounds, how many calls it runs at once, and what a run costs.

``--model NAME`` is a name from a models file (``--models-config``: the ``models:`` section
of a run config, or a file holding just that mapping) or a built-in backend: ``local``
(the bundled SmolLM2 through llama.cpp) or ``scripted`` (tests). ``surrogate`` is refused:
it is a labelled stand-in that answers numbers, not an LLM that can write prose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from megasim.model.config import (
    LocalModelConfig,
    ModelConfig,
    OpenAIModelConfig,
    ScriptedModelConfig,
)
from megasim.population.backgrounds_prompt import background_messages, estimate_prompt_tokens
from megasim.population.yaml_input import dotted, field_path, read_yaml_file

EXPECTED_RETRY_RATE = 0.1
"""Extra calls per agent assumed by the estimate (rejections and near-duplicates)."""

COMPLETION_TOKENS = 120
"""Typical completion of one background (SmolLM2-135M: 90-150 tokens measured)."""

LOCAL_CALLS_PER_S = 0.8
"""Bundled SmolLM2-135M, 4 slots, 2 idle CPU cores, ~120-token answers: measured 0.77-0.81
calls/s (0.15 while other jobs loaded the cores). Pass ``--rate`` for other machines."""

_MODELS: TypeAdapter[dict[str, ModelConfig]] = TypeAdapter(dict[str, ModelConfig])


class BackgroundSetupError(ValueError):
    """A model choice or models file that cannot be used (CLI exit code 2)."""


def load_models_config(path: Path) -> dict[str, ModelConfig]:
    """Named model configs from YAML; errors read ``<file>: <field>: <message>``."""
    data = read_yaml_file(path, BackgroundSetupError, yaml_problem="invalid YAML")
    if not isinstance(data, dict):
        raise BackgroundSetupError(f"{path}: expected a mapping at the top level")
    nested = isinstance(data.get("models"), dict)
    models: Any = data["models"] if nested else data
    try:
        configs = _MODELS.validate_python(models)
    except ValidationError as exc:
        prefix = "models." if nested else ""
        raise BackgroundSetupError(_format_error(str(path), prefix, exc, models)) from None
    if not configs:
        raise BackgroundSetupError(f"{path}: models: no model is defined")
    return configs


def _format_error(source: str, prefix: str, error: ValidationError, data: object) -> str:
    """One ``<file>: <field>: <message>`` line per problem, as a run config reports them."""
    lines = []
    for item in error.errors(include_url=False):
        path = field_path(item["loc"], data, ("backend",))
        if item["type"] == "union_tag_invalid":
            path.append(str(item.get("ctx", {}).get("discriminator", "")).strip("'"))
        lines.append(f"{source}: {prefix}{dotted(path) or '<top level>'}: {item['msg']}")
    return "\n".join(lines)


def resolve_model(
    name: str, configs: Mapping[str, ModelConfig] | None = None, source: str = "--model"
) -> ModelConfig:
    """The config for ``name``: a configured model first, then a built-in backend."""
    configs = configs or {}
    config: ModelConfig
    if name in configs:
        config = configs[name]
    elif name == "local":
        config = LocalModelConfig(backend="local")
    elif name == "scripted":
        config = ScriptedModelConfig(backend="scripted")
    elif name == "surrogate":
        raise _surrogate_refused(name, source)
    else:
        known = ", ".join(sorted({*configs, "local", "scripted"}))
        raise BackgroundSetupError(f"{source}: unknown model {name!r} (known: {known})")
    if config.backend == "surrogate":
        raise _surrogate_refused(name, source)
    return config


def _surrogate_refused(name: str, source: str) -> BackgroundSetupError:
    return BackgroundSetupError(
        f"{source}: model {name!r} is the surrogate backend, a labelled non-LLM stand-in "
        "that answers numbers; it cannot write backgrounds. Use `local` or an LLM from "
        "--models-config."
    )


def concurrency_for(config: ModelConfig) -> int:
    """Calls in flight: 4x a local model's slots (keeps them fed), at least 64 for a server."""
    if isinstance(config, LocalModelConfig):
        return 4 * config.parallel
    if isinstance(config, OpenAIModelConfig):
        return max(64, 2 * config.max_concurrency)
    return 4


def default_rate(config: ModelConfig) -> float | None:
    """Calls per second for the time estimate, when known without measuring."""
    return LOCAL_CALLS_PER_S if isinstance(config, LocalModelConfig) else None


@dataclass(frozen=True, slots=True)
class BackgroundEstimate:
    """What a run is expected to cost; every number is an estimate."""

    agents: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float | None  # None: no rate known

    def lines(self, rate: float | None) -> list[str]:
        time_text = (
            "unknown: pass --rate CALLS_PER_S for an estimate"
            if self.seconds is None
            else f"~{_duration(self.seconds)} at {rate:g} calls/s (an estimate)"
        )
        return [
            f"agents to do: {self.agents:,}",
            f"model calls:  ~{self.calls:,} (assuming {EXPECTED_RETRY_RATE:.0%} retries)",
            f"tokens:       ~{self.prompt_tokens:,} prompt + ~{self.completion_tokens:,} "
            "completion",
            f"time:         {time_text}",
        ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_run(
    agents: int, sample_attributes: Mapping[str, Any], rate: float | None
) -> BackgroundEstimate:
    """Calls, tokens and time for ``agents`` agents shaped like ``sample_attributes``."""
    calls = round(agents * (1 + EXPECTED_RETRY_RATE))
    prompt = estimate_prompt_tokens(background_messages(sample_attributes))
    seconds = calls / rate if rate else None
    return BackgroundEstimate(agents, calls, calls * prompt, calls * COMPLETION_TOKENS, seconds)
