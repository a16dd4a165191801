"""Tests for megasim.model.factory and the model configuration it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import TypeAdapter, ValidationError

from megasim.model import local
from megasim.model.base import ChatMessage, ChatRequest, ModelClient, ModelSetupError
from megasim.model.config import (
    LocalModelConfig,
    ModelConfig,
    OpenAIModelConfig,
    ScriptedModelConfig,
    SurrogateModelConfig,
)
from megasim.model.factory import build_model, build_models
from megasim.model.merge import MergingModel
from megasim.model.openai_backend import OpenAIModel
from megasim.model.retry import RetryingModel
from megasim.model.scripted import ScriptedModel
from megasim.model.surrogate import SurrogateModel

CONFIGS = TypeAdapter(dict[str, ModelConfig])


class FakeLocal:
    """Stands in for LocalModel so that building a local config loads no GGUF."""

    instances: list[FakeLocal] = []  # noqa: RUF012 - test bookkeeping

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.name = kwargs["name"]
        self.immediate = False
        FakeLocal.instances.append(self)

    async def complete(self, request: object) -> object:  # pragma: no cover - never called
        raise AssertionError("not called")

    async def aclose(self) -> None:
        return None


@pytest.fixture
def fake_local(monkeypatch: pytest.MonkeyPatch) -> type[FakeLocal]:
    FakeLocal.instances = []
    monkeypatch.setattr(local, "LocalModel", FakeLocal)
    return FakeLocal


def unwrap(model: ModelClient) -> ModelClient:
    """Real backends come as Merge(Retry(backend)); these tests look at the retry layer."""
    if isinstance(model, MergingModel):
        return model.inner
    return model


def test_surrogate_is_built_directly() -> None:
    model = unwrap(build_model("sur", SurrogateModelConfig(backend="surrogate", latency_s=0.25)))
    assert isinstance(model, SurrogateModel)
    assert isinstance(model, ModelClient)
    assert model.name == "sur"
    assert model.latency_s == 0.25
    assert model.immediate is False
    fast = build_model("fast", SurrogateModelConfig(backend="surrogate"))
    assert fast.immediate is True


async def test_scripted_is_built_directly_with_its_responses() -> None:
    model = unwrap(build_model("s", ScriptedModelConfig(backend="scripted", responses=["1", "2"])))
    assert isinstance(model, ScriptedModel)
    assert model.name == "s"
    request = ChatRequest(messages=(ChatMessage("user", "hi"),), agent_id=1)
    assert (await model.complete(request)).text == "2"
    default = build_model("d", ScriptedModelConfig(backend="scripted"))
    assert (await default.complete(request)).text == "33"


def test_local_is_wrapped_in_retrying_model(fake_local: type[FakeLocal]) -> None:
    config = LocalModelConfig(
        backend="local",
        path="/models/x.gguf",
        parallel=3,
        context_per_slot=512,
        threads=2,
        structured=False,
        temperature=0.2,
        max_tokens=40,
        retries=5,
        deterministic=True,
    )
    model = unwrap(build_model("loc", config))
    assert isinstance(model, RetryingModel)
    assert model.retries == 5
    assert model.name == "loc"
    assert model.immediate is False
    (inner,) = fake_local.instances
    assert model.inner is cast(ModelClient, inner)
    assert inner.kwargs == {
        "name": "loc",
        "path": "/models/x.gguf",
        "parallel": 3,
        "context_per_slot": 512,
        "threads": 2,
        "structured": False,
        "temperature": 0.2,
        "max_tokens_cap": 40,
        "deterministic": True,
    }


def test_local_defaults(fake_local: type[FakeLocal]) -> None:
    model = unwrap(build_model("smollm2", LocalModelConfig(backend="local")))
    assert isinstance(model, RetryingModel)
    assert model.retries == 3
    (inner,) = fake_local.instances
    assert inner.kwargs["path"] is None  # the bundled model
    assert inner.kwargs["parallel"] == 4
    assert inner.kwargs["structured"] is True
    assert inner.kwargs["temperature"] == 1.0
    assert inner.kwargs["max_tokens_cap"] is None
    assert inner.kwargs["deterministic"] is False


async def test_openai_builds_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEGASIM_TEST_KEY", "sk-test-123")
    config = OpenAIModelConfig(
        backend="openai",
        base_url="http://127.0.0.1:9/v1",  # discard port: nothing is contacted while building
        model="qwen",
        api_key_env="MEGASIM_TEST_KEY",
        max_concurrency=4,
        timeout_s=7.5,
        temperature=0.7,
        max_tokens=30,
        retries=0,
    )
    model = unwrap(build_model("remote", config))
    assert isinstance(model, RetryingModel)
    assert model.retries == 0
    assert model.name == "remote"
    inner = model.inner
    assert isinstance(inner, OpenAIModel)
    assert inner.name == "remote"
    assert inner.model == "qwen"
    assert inner.temperature == 0.7
    assert inner.max_tokens_cap == 30
    assert inner.structured is True
    assert inner.immediate is False
    client = inner._client
    assert str(client.base_url).rstrip("/") == "http://127.0.0.1:9/v1"
    assert client.api_key == "sk-test-123"
    assert client.timeout == 7.5
    assert client.max_retries == 0  # the retry wrapper owns retries
    await model.aclose()


def test_openai_with_unset_key_variable_fails_at_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A named key variable that is missing is a setup error naming it, not a dummy key."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = OpenAIModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ModelSetupError, match=r"'o'.*OPENAI_API_KEY.*api_key_env: null"):
        build_model("o", config)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    with pytest.raises(ModelSetupError, match="OPENAI_API_KEY"):
        build_model("o", config)


async def test_keyless_endpoint_sends_a_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    no_env = unwrap(
        build_model(
            "o2",
            OpenAIModelConfig(
                backend="openai", base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None
            ),
        )
    )
    assert isinstance(no_env, RetryingModel)
    assert isinstance(no_env.inner, OpenAIModel)
    assert no_env.inner._client.api_key == "not-needed"
    await no_env.aclose()


def test_pool_with_unset_key_variable_fails_at_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEGASIM_NO_SUCH_KEY", raising=False)
    config = OpenAIModelConfig(
        backend="openai",
        model="m",
        api_key_env="MEGASIM_NO_SUCH_KEY",
        endpoints=[{"base_url": "http://127.0.0.1:9/v1"}, {"base_url": "http://127.0.0.1:10/v1"}],
    )
    with pytest.raises(ModelSetupError, match="MEGASIM_NO_SUCH_KEY"):
        build_model("p", config)


def test_build_models_builds_only_the_names_asked_for(fake_local: type[FakeLocal]) -> None:
    configs = CONFIGS.validate_python(
        {
            "big": {"backend": "local"},
            "sur": {"backend": "surrogate"},
            "script": {"backend": "scripted", "responses": ["7"]},
        }
    )
    models = build_models(configs, {"sur", "script"})
    assert set(models) == {"sur", "script"}
    assert isinstance(models["sur"], SurrogateModel)
    assert isinstance(models["script"], ScriptedModel)
    assert models["sur"].name == "sur"
    assert fake_local.instances == []  # the unused local model started no server

    assert build_models(configs, set()) == {}
    only_local = build_models(configs, {"big"})
    assert list(only_local) == ["big"]
    assert len(fake_local.instances) == 1


def test_build_models_unknown_name_fails() -> None:
    configs = CONFIGS.validate_python({"sur": {"backend": "surrogate"}})
    with pytest.raises(KeyError, match="missing"):
        build_models(configs, {"sur", "missing"})


def test_configs_parse_from_plain_data() -> None:
    configs = CONFIGS.validate_python(
        {
            "a": {"backend": "local", "parallel": 8},
            "b": {"backend": "openai", "base_url": "http://h/v1", "model": "m"},
            "c": {"backend": "surrogate", "latency_s": 0.5},
            "d": {"backend": "scripted"},
        }
    )
    assert isinstance(configs["a"], LocalModelConfig)
    assert configs["a"].parallel == 8
    assert isinstance(configs["b"], OpenAIModelConfig)
    assert configs["b"].api_key_env == "OPENAI_API_KEY"
    assert isinstance(configs["c"], SurrogateModelConfig)
    assert isinstance(configs["d"], ScriptedModelConfig)
    assert configs["d"].responses == ["33"]


def _errors(data: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as info:
        CONFIGS.validate_python(data)
    return list(info.value.errors())


def test_unknown_backend_is_rejected() -> None:
    (error,) = _errors({"mine": {"backend": "nope"}})
    assert error["type"] == "union_tag_invalid"
    assert "mine" in error["loc"]
    assert "backend" in error["ctx"]["discriminator"]
    assert error["ctx"]["tag"] == "nope"
    assert "surrogate" in error["ctx"]["expected_tags"]


def test_missing_backend_is_rejected() -> None:
    (error,) = _errors({"mine": {"latency_s": 1.0}})
    assert error["type"] == "union_tag_not_found"
    assert "backend" in error["ctx"]["discriminator"]


def test_extra_field_is_rejected() -> None:
    (error,) = _errors({"mine": {"backend": "surrogate", "latency": 1.0}})
    assert error["type"] == "extra_forbidden"
    assert "latency" in error["loc"]
    assert "mine" in error["loc"]


def test_parallel_zero_is_rejected() -> None:
    (error,) = _errors({"mine": {"backend": "local", "parallel": 0}})
    assert error["type"] == "greater_than_equal"
    assert "parallel" in error["loc"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"backend": "local", "parallel": 257}, "parallel"),
        ({"backend": "local", "context_per_slot": 100}, "context_per_slot"),
        ({"backend": "surrogate", "temperature": 2.5}, "temperature"),
        ({"backend": "surrogate", "retries": -1}, "retries"),
        ({"backend": "surrogate", "retries": 21}, "retries"),
        ({"backend": "surrogate", "max_tokens": 0}, "max_tokens"),
        ({"backend": "surrogate", "latency_s": -0.1}, "latency_s"),
        ({"backend": "scripted", "responses": []}, "responses"),
        ({"backend": "openai", "base_url": "http://h/v1"}, "model"),
        ({"backend": "openai", "base_url": "u", "model": "m", "timeout_s": 0}, "timeout_s"),
        (
            {"backend": "openai", "base_url": "u", "model": "m", "max_concurrency": 0},
            "max_concurrency",
        ),
    ],
)
def test_field_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    errors = _errors({"m": data})
    assert any(field in e["loc"] for e in errors), errors


def test_merge_and_cache_wrappers(tmp_path: Path) -> None:
    from megasim.model.cache import CachingModel

    config = OpenAIModelConfig(
        backend="openai",
        base_url="http://127.0.0.1:9/v1",
        model="m",
        api_key_env=None,
        cache=str(tmp_path / "c.db"),
    )
    model = build_model("o", config)
    assert isinstance(model, CachingModel)
    assert isinstance(model.inner, MergingModel)
    assert isinstance(model.inner.inner, RetryingModel)
    assert model.inner.max_n > 1  # the openai backend can answer n samples in one call
    plain = build_model(
        "o",
        OpenAIModelConfig(
            backend="openai", base_url="http://x/v1", model="m", merge=False, api_key_env=None
        ),
    )
    assert isinstance(plain, RetryingModel)
