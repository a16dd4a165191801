"""Build model clients from configuration."""

from __future__ import annotations

from collections.abc import Mapping

from megasim.model.base import ModelClient
from megasim.model.config import (
    LocalModelConfig,
    ModelConfig,
    OpenAIModelConfig,
    ScriptedModelConfig,
    SurrogateModelConfig,
)
from megasim.model.retry import RetryingModel


def build_model(name: str, config: ModelConfig) -> ModelClient:
    """One client per named model; real backends get the retry wrapper."""
    inner: ModelClient
    if isinstance(config, SurrogateModelConfig):
        from megasim.model.surrogate import SurrogateModel

        return SurrogateModel(name=name, latency_s=config.latency_s)
    if isinstance(config, ScriptedModelConfig):
        from megasim.model.scripted import ScriptedModel

        return ScriptedModel(name=name, responses=config.responses)
    if isinstance(config, LocalModelConfig):
        from megasim.model.local import LocalModel

        inner = LocalModel(
            name=name,
            path=config.path,
            parallel=config.parallel,
            context_per_slot=config.context_per_slot,
            threads=config.threads,
            structured=config.structured,
            temperature=config.temperature,
            max_tokens_cap=config.max_tokens,
        )
    elif isinstance(config, OpenAIModelConfig):
        from megasim.model.openai_backend import OpenAIModel

        inner = OpenAIModel(
            name=name,
            base_url=config.base_url,
            model=config.model,
            api_key_env=config.api_key_env,
            max_concurrency=config.max_concurrency,
            timeout_s=config.timeout_s,
            structured=config.structured,
            temperature=config.temperature,
            max_tokens_cap=config.max_tokens,
        )
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise TypeError(f"unknown model config {config!r}")
    return RetryingModel(inner, retries=config.retries)


def build_models(configs: Mapping[str, ModelConfig], names: set[str]) -> dict[str, ModelClient]:
    """Build only the models some agent uses (a local model costs a server each)."""
    return {name: build_model(name, configs[name]) for name in sorted(names)}
