"""The model layer against servers that refuse or ignore optional fields (fake-server
modes copying llama.cpp, Ollama, OpenAI, Azure, vLLM): no decision is lost to them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelClient
from megasim.model.config import OpenAIModelConfig
from megasim.model.factory import build_model
from megasim.model.fake_quirks import Quirks
from megasim.model.fake_server import FakeServer
from megasim.model.features import EndpointFeatures, blamed_field, parse_n_limit
from megasim.model.parsing import parse_guess

SCHEMA = {"type": "object", "properties": {"guess": {"type": "number"}}, "required": ["guess"]}
MESSAGES = (ChatMessage("user", "Guess a number between 0 and 100."),)


def _requests(count: int, schema: bool = True) -> list[ChatRequest]:
    return [
        ChatRequest(MESSAGES, max_tokens=16, seed=1000 + i, json_schema=SCHEMA if schema else None)
        for i in range(count)
    ]


def _model(server: FakeServer, **settings: Any) -> ModelClient:
    options: dict[str, Any] = {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "fake-model",
        "api_key_env": None,
        "merge_window_s": 0.05,
        **settings,
    }
    return build_model("m", OpenAIModelConfig(**options))


async def _ask(model: ModelClient, requests: list[ChatRequest]) -> list[ChatResponse]:
    return list(await asyncio.gather(*(model.complete(r) for r in requests)))


def _features(model: ModelClient) -> dict[str, Any]:
    snapshot: dict[str, Any] = model.metrics_snapshot()  # type: ignore[attr-defined]
    (endpoint,) = snapshot["endpoints"].values()
    features: dict[str, Any] = endpoint["features"]
    return features


def _all_ok(responses: list[ChatResponse]) -> None:
    errors = [r.error for r in responses if not r.ok]
    assert not errors, errors
    assert all(parse_guess(r.text, 0, 100).valid for r in responses)


# -- n ---------------------------------------------------------------------------------


async def test_n_above_the_limit_is_learned_from_the_400_and_no_sample_is_lost() -> None:
    """The issue's failure: llama.cpp's server rejects n=20 with 'Value must be between
    1 <= value <= 4'. The 20 samples come in calls of 4, and the limit is kept."""
    async with FakeServer(quirks=Quirks(max_n=4)) as server:
        model = _model(server)
        try:
            first = await _ask(model, _requests(20))
            _all_ok(first)
            assert server.counts["rejected"] == 1  # one call with n=20, then never again
            assert server.counts["ok"] == 5  # 20 samples in calls of 4
            assert len({r.text for r in first}) == 20  # every member its own sample
            features = _features(model)
            assert features["max_n"] == 4
            assert "n=20 rejected" in features["learned"][0]
            assert model.max_n == 4  # type: ignore[attr-defined]
            second = await _ask(model, _requests(12))
            _all_ok(second)
            assert server.counts["rejected"] == 1  # the learned limit held
            assert server.counts["ok"] == 5 + 3
        finally:
            await model.aclose()


async def test_n_limit_without_a_number_is_found_by_halving() -> None:
    async with FakeServer(quirks=Quirks(max_n=3, n_limit_in_message=False)) as server:
        model = _model(server)
        try:
            responses = await _ask(model, _requests(16))
        finally:
            await model.aclose()
    _all_ok(responses)
    assert len({r.text for r in responses}) == 16
    assert _features(model)["max_n"] <= 3
    assert server.counts["rejected"] >= 1


async def test_server_ignoring_n_gets_the_missing_samples_asked_again() -> None:
    """Ollama answers one choice for any n: the 11 others are asked for one by one, each
    with its own derived seed (not 12 copies of the same sample)."""
    async with FakeServer(quirks=Quirks(ignore_n=True)) as server:
        model = _model(server)
        try:
            responses = await _ask(model, _requests(12))
            features = _features(model)
            assert features["n_ignored"] is True
            assert features["max_n"] == 1
            assert server.counts["ok"] == 12
            server.reset_counts()
            _all_ok(await _ask(model, _requests(5)))
            assert server.counts["ok"] == 5  # merging now off: one call each, none wasted
            assert "n" not in (server.last_request or {})
        finally:
            await model.aclose()
    _all_ok(responses)
    assert len({r.text for r in responses}) == 12


async def test_token_accounting_sums_every_call_of_a_split_merge() -> None:
    async with FakeServer(quirks=Quirks(max_n=2)) as server:
        model = _model(server)
        try:
            responses = await _ask(model, _requests(6))
        finally:
            await model.aclose()
    _all_ok(responses)
    snapshot = model.metrics_snapshot()  # type: ignore[attr-defined]
    assert sum(r.tokens_out for r in responses) == snapshot["tokens_out"]
    assert sum(r.tokens_in for r in responses) == snapshot["tokens_in"]
    assert snapshot["errors"] == {"4xx": 1}  # the one rejected call, counted as such
    assert snapshot["requests_failed"] == 0


async def test_configured_max_n_is_never_exceeded() -> None:
    async with FakeServer(quirks=Quirks(max_n=3)) as server:
        model = _model(server, max_n=3)
        try:
            _all_ok(await _ask(model, _requests(10)))
        finally:
            await model.aclose()
    assert server.counts["rejected"] == 0
    assert server.counts["ok"] == 4


async def test_pool_merges_up_to_its_smallest_endpoint_limit() -> None:
    async with FakeServer(quirks=Quirks(max_n=2)) as small, FakeServer() as big:
        config = OpenAIModelConfig(
            backend="openai",
            model="fake-model",
            api_key_env=None,
            merge_window_s=0.05,
            endpoints=[{"base_url": small.base_url, "max_n": 2}, {"base_url": big.base_url}],
        )
        model = build_model("p", config)
        try:
            responses = await _ask(model, _requests(8))
        finally:
            await model.aclose()
    _all_ok(responses)
    assert model.max_n == 2  # type: ignore[attr-defined]
    assert small.counts["rejected"] == big.counts["rejected"] == 0
    assert small.counts["ok"] + big.counts["ok"] == 4


# -- other optional fields ------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "used"), [("reject_schema", "json_object"), ("reject", "none")])
async def test_rejected_response_format_falls_back(mode: Any, used: str) -> None:
    async with FakeServer(quirks=Quirks(response_format=mode)) as server:
        model = _model(server, merge=False)
        try:
            responses = await _ask(model, _requests(3))
            features = _features(model)
        finally:
            await model.aclose()
    _all_ok(responses)
    assert features["response_format"] == used
    sent = (server.last_request or {}).get("response_format")
    assert sent == ({"type": "json_object"} if used == "json_object" else None)


async def test_ignored_response_format_still_gives_parsed_answers() -> None:
    async with FakeServer(quirks=Quirks(response_format="ignore")) as server:
        model = _model(server)
        try:
            responses = await _ask(model, _requests(4))
        finally:
            await model.aclose()
    _all_ok(responses)
    assert all(r.text.startswith("My guess is") for r in responses)


async def test_rejected_seed_is_dropped_and_recorded() -> None:
    async with FakeServer(quirks=Quirks(seed="reject")) as server:
        model = _model(server, merge=False)
        try:
            responses = await _ask(model, _requests(3))
            features = _features(model)
        finally:
            await model.aclose()
    _all_ok(responses)
    assert features["seed"] == "dropped"
    assert "seed" not in (server.last_request or {})
    assert server.counts["rejected"] >= 1


async def test_rejected_max_tokens_moves_to_max_completion_tokens() -> None:
    async with FakeServer(quirks=Quirks(max_tokens="reject")) as server:
        model = _model(server, merge=False)
        try:
            responses = await _ask(model, _requests(2))
            features = _features(model)
        finally:
            await model.aclose()
    _all_ok(responses)
    assert features["max_tokens_field"] == "max_completion_tokens"
    assert (server.last_request or {}).get("max_completion_tokens") == 16


async def test_every_quirk_at_once() -> None:
    quirks = Quirks(max_n=2, response_format="reject", seed="reject", max_tokens="reject")
    async with FakeServer(quirks=quirks) as server:
        model = _model(server)
        try:
            responses = await _ask(model, _requests(9))
            features = _features(model)
        finally:
            await model.aclose()
    _all_ok(responses)
    assert features["max_n"] == 2
    assert features["seed"] == "dropped"
    assert features["response_format"] == "none"
    assert features["max_tokens_field"] == "max_completion_tokens"


async def test_unknown_model_name_is_a_recorded_404_not_retried() -> None:
    async with FakeServer(quirks=Quirks(strict_model=True), model="served") as server:
        model = _model(server, model="typo")
        try:
            responses = await _ask(model, _requests(5))
        finally:
            await model.aclose()
    assert all(r.error is not None and r.error.startswith("HTTP 404") for r in responses)
    assert all("typo" in (r.error or "") for r in responses)
    assert server.counts["requests"] == 1  # merged, not retried, nothing learned


async def test_an_unrelated_400_is_not_mistaken_for_a_field() -> None:
    async with FakeServer() as server:
        model = _model(server)
        try:
            bad = [ChatRequest((ChatMessage("user", ""),) * 0, max_tokens=4) for _ in range(2)]
            responses = await _ask(model, bad)
        finally:
            await model.aclose()
    assert all(r.error is not None and r.error.startswith("HTTP 400") for r in responses)
    assert _features(model)["learned"] == []


# -- the parsing of servers' messages ------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        ("Field 'n': Value must be between 1 <= value <= 4, but got 20", 4),  # llama.cpp
        ("Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129", 128),
        ("Range of n should be [1, 4]", 4),
        ("n must be at most 8", 8),
        ("'n' is not supported", None),
    ],
)
def test_n_limits_are_read_from_server_messages(message: str, limit: int | None) -> None:
    assert blamed_field(message, {"n": 200}) == "n"
    assert parse_n_limit(message) == limit


@pytest.mark.parametrize(
    "message",
    [
        "the request exceeds the available context size, try increasing it (n_ctx)",
        "This model's maximum context length is 2048 tokens. However, you requested 2100",
        "The model `x` does not exist.",
    ],
)
def test_messages_about_other_things_blame_no_field(message: str) -> None:
    body = {"n": 4, "seed": 1, "max_tokens": 8, "messages": []}
    assert blamed_field(message, body) is None


def test_only_fields_the_body_carried_are_blamed() -> None:
    assert blamed_field("Unrecognized request argument supplied: seed", {}) is None
    assert blamed_field("Field 'n': must be <= 1", {"n": 1}) is None  # n was not asked for
    features = EndpointFeatures(8)
    assert not features.on_rejection({"messages": []}, 400, "bad seed")
    assert features.snapshot()["learned"] == []


def test_features_ladder_and_body_rewrite() -> None:
    features = EndpointFeatures(16)
    body = {"seed": 1, "max_tokens": 8, "response_format": {"type": "json_schema"}, "n": 16}
    assert features.on_rejection(body, 400, "json_schema unsupported")
    assert features.on_rejection(body, 400, "json_schema unsupported")  # a late duplicate
    assert features.response_format == "json_object"  # stepped once, not twice
    assert features.on_rejection(body, 400, "Field 'n': Value must be between 1 <= value <= 4")
    features.on_choices(asked=4, got=3)
    rewritten = features.apply(dict(body))
    assert rewritten["response_format"] == {"type": "json_object"}
    assert features.max_n == 3
    assert json.dumps(features.snapshot())  # plain data
    with pytest.raises(ValueError, match="max_n"):
        EndpointFeatures(0)
