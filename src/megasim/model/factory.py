"""Build model clients from configuration."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from megasim.model.base import ModelClient
from megasim.model.config import (
    LocalModelConfig,
    ModelConfig,
    OpenAIModelConfig,
    ScriptedModelConfig,
    SurrogateModelConfig,
)
from megasim.model.retry import RetryingModel

if TYPE_CHECKING:
    from megasim.model.journal import StepJournal


def build_model(
    name: str, config: ModelConfig, node_names: frozenset[str] = frozenset()
) -> ModelClient:
    """One client per named model; real backends get the retry wrapper. ``node_names``
    identify the Ray node this runs on (a shard actor's), for endpoints' ``node``."""
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
            deterministic=config.deterministic,
        )
    elif isinstance(config, OpenAIModelConfig):
        inner = _build_openai(name, config, node_names)
        retrying = RetryingModel(
            inner, retries=config.retries, max_retry_after_s=config.max_retry_after_s
        )
        return _wrap(retrying, config)
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise TypeError(f"unknown model config {config!r}")
    return _wrap(RetryingModel(inner, retries=config.retries), config)


def _wrap(client: ModelClient, config: LocalModelConfig | OpenAIModelConfig) -> ModelClient:
    """Cache(Merge(Retry(backend))): a cache hit costs nothing; misses are merged; a merged
    call is retried as a whole. ``build_models`` may put a Journal around all of it."""
    if config.merge:
        from megasim.model.merge import MergingModel

        # the backend's max_n caps each call (and is lowered as servers teach it)
        client = MergingModel(client, window_s=config.merge_window_s, max_n=1024)
    if config.cache is not None:
        from megasim.model.cache import CachingModel

        fingerprint = config.model_dump_json(exclude={"cache", "merge", "merge_window_s"})
        client = CachingModel(client, Path(config.cache), fingerprint)
    return client


def _build_openai(name: str, config: OpenAIModelConfig, node_names: frozenset[str]) -> ModelClient:
    """``base_url``: one OpenAIModel; ``endpoints``: an EndpointPool (balancing, dead
    endpoints taken out and probed back). Both keep metrics (``metrics_snapshot()``)."""
    if config.endpoints is None:
        from megasim.model.openai_backend import OpenAIModel

        ((base_url, max_concurrency),) = config.endpoint_list()
        return OpenAIModel(
            name=name,
            base_url=base_url,
            model=config.model,
            api_key_env=config.api_key_env,
            max_concurrency=max_concurrency,
            timeout_s=config.timeout_s,
            structured=config.structured,
            temperature=config.temperature,
            max_tokens_cap=config.max_tokens,
            http_client=config.http_client,
            max_n=config.max_n,
        )
    from megasim.model.endpoint import EndpointSpec
    from megasim.model.pool import EndpointPool

    return EndpointPool(
        name=name,
        endpoints=[
            EndpointSpec(url, cap, node, max_n)
            for (url, cap), node, max_n in zip(
                config.endpoint_list(),
                [e.node for e in config.endpoints],
                config.endpoint_max_n(),
                strict=True,
            )
        ],
        local_node=node_names,
        model=config.model,
        api_key_env=config.api_key_env,
        timeout_s=config.timeout_s,
        structured=config.structured,
        temperature=config.temperature,
        max_tokens_cap=config.max_tokens,
        dead_after=config.dead_after,
        probe_initial_s=config.probe_initial_s,
        probe_max_s=config.probe_max_s,
        unavailable_timeout_s=config.unavailable_timeout_s,
        max_retry_after_s=config.max_retry_after_s,
        health_path=config.health_path,
        http_client=config.http_client,
    )


def build_models(
    configs: Mapping[str, ModelConfig],
    names: set[str],
    node_names: frozenset[str] = frozenset(),
    journal: StepJournal | None = None,
) -> dict[str, ModelClient]:
    """Build only the models some agent uses (a local model costs a server each). With a
    ``journal``, LLM backends (local, openai) log every answer and replay logged ones;
    the stand-ins (surrogate, scripted) are deterministic and free, and stay unwrapped."""
    models: dict[str, ModelClient] = {}
    for name in sorted(names):
        config = configs[name]
        model = build_model(name, config, node_names)
        if journal is not None and isinstance(config, LocalModelConfig | OpenAIModelConfig):
            from megasim.model.journal import JournalingModel

            model = JournalingModel(model, journal)
        models[name] = model
    return models
