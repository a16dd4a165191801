"""Tests for megasim.model.surrogate: the labelled, seeded, non-LLM stand-in."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import pytest

from megasim.model.base import ChatMessage, ChatRequest, ModelClient
from megasim.model.parsing import parse_guess
from megasim.model.surrogate import LABEL, SurrogateModel

SEEDS = range(2_000)


def _request(seed: int | None, persona: dict[str, Any] | None = None, **meta: Any) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage("user", "guess"),), seed=seed, persona=persona, meta=meta
    )


def _answers(
    model: SurrogateModel, persona: dict[str, Any] | None = None, **meta: Any
) -> list[float]:
    return [model.answer(_request(seed, persona, **meta)) for seed in SEEDS]


def test_is_a_model_client() -> None:
    model = SurrogateModel()
    assert isinstance(model, ModelClient)
    assert model.name == "surrogate"
    assert model.immediate is True


def test_same_seed_and_meta_give_the_same_answer() -> None:
    meta = {"variant": "P2", "step": 1}
    persona = {"education": "master"}
    a, b = SurrogateModel(), SurrogateModel(name="other")
    for seed in (0, 1, 12345, 2**62):
        first = a.answer(_request(seed, persona, **meta))
        assert first == b.answer(_request(seed, dict(persona), **dict(meta)))
        assert first == a.answer(_request(seed, persona, **meta))


async def test_same_seed_gives_the_same_text() -> None:
    model = SurrogateModel()
    first = await model.complete(_request(99, variant="P3"))
    second = await model.complete(_request(99, variant="P3"))
    assert first.text == second.text


def test_different_seeds_differ() -> None:
    answers = _answers(SurrogateModel(), variant="P2")
    assert len(set(answers)) > 200
    assert statistics.pstdev(answers) > 1.0


def test_no_seed_counts_as_seed_zero() -> None:
    model = SurrogateModel()
    assert model.answer(_request(None)) == model.answer(_request(0))


@pytest.mark.parametrize("variant", ["P1", "P2", "P3", "P4", "P5", "unknown"])
def test_answers_within_default_bounds(variant: str) -> None:
    answers = _answers(SurrogateModel(), variant=variant)
    assert all(0.0 <= a <= 100.0 for a in answers)


@pytest.mark.parametrize(
    ("low", "high", "meta"),
    [
        (20.0, 30.0, {}),
        (0.0, 10.0, {"previous_winner": 90}),  # anchor far above the range: clipped to high
        (40.0, 60.0, {"ratio": 0.1}),  # deep iterations fall below low: clipped to low
        (0.0, 100.0, {"ratio": 1.5, "previous_winner": 90}),  # grows past high
        (-50.0, 50.0, {"offset": -30.0}),
    ],
)
def test_answers_clipped_to_low_high(low: float, high: float, meta: dict[str, Any]) -> None:
    answers = _answers(SurrogateModel(), low=low, high=high, **meta)
    assert all(low <= a <= high for a in answers)
    assert min(answers) >= low
    assert max(answers) <= high


def test_clipping_actually_happens_at_the_edges() -> None:
    model = SurrogateModel()
    assert set(_answers(model, low=0, high=10, previous_winner=90, ratio=1.0)) == {10.0}
    assert set(_answers(model, low=40, high=60, ratio=0.01, variant="P4")) >= {40.0}


def test_answers_are_rounded_to_one_decimal() -> None:
    for a in _answers(SurrogateModel(), variant="P3")[:200]:
        assert a == round(a, 1)


def test_depends_on_prompt_variant() -> None:
    model = SurrogateModel()
    means = {v: statistics.fmean(_answers(model, variant=v)) for v in ("P1", "P2", "P3", "P4")}
    assert means["P1"] > means["P4"] + 5.0
    # deeper reasoning lowers the guess, variant by variant
    assert means["P1"] > means["P2"] > means["P3"] > means["P4"]


def test_missing_variant_behaves_like_p1() -> None:
    model = SurrogateModel()
    assert _answers(model) == _answers(model, variant="P1")


def test_depends_on_persona_education() -> None:
    model = SurrogateModel()
    phd = statistics.fmean(_answers(model, variant="P2", persona={"education": "PhD"}))
    school = statistics.fmean(
        _answers(model, variant="P2", persona={"education": "elementary school"})
    )
    plain = statistics.fmean(_answers(model, variant="P2"))
    assert phd < plain < school
    assert school - phd > 5.0


def test_education_is_case_insensitive_and_unknown_is_neutral() -> None:
    model = SurrogateModel()
    assert _answers(model, persona={"education": "PhD"}) == _answers(
        model, persona={"education": "phd"}
    )
    neutral = _answers(model)
    assert _answers(model, persona={"education": "wizardry"}) == neutral
    assert _answers(model, persona={"age": 40}) == neutral
    assert _answers(model, persona={"education": None}) == neutral


def test_follows_previous_winner() -> None:
    model = SurrogateModel()
    low_anchor = _answers(model, variant="P2", previous_winner=10)
    high_anchor = _answers(model, variant="P2", previous_winner=80)
    # iterations only shrink the anchor (ratio 2/3); noise adds at most 15 %
    assert max(low_anchor) <= 10 * 1.15 + 0.05
    assert statistics.fmean(high_anchor) > statistics.fmean(low_anchor) + 20
    # round 1 anchors at the middle of the range, so round 2 near 10 is well below it
    assert statistics.fmean(low_anchor) < statistics.fmean(_answers(model, variant="P2")) - 10


def test_previous_winner_zero_is_an_anchor_not_missing() -> None:
    answers = _answers(SurrogateModel(), previous_winner=0)
    assert set(answers) == {0.0}


async def test_text_is_labelled_and_holds_json_guess() -> None:
    model = SurrogateModel(name="sur")
    request = _request(7, variant="P3", persona={"education": "bachelor"})
    response = await model.complete(request)
    assert response.ok
    assert response.model == "sur"
    assert response.text.startswith(LABEL)
    assert LABEL == "[surrogate]"
    payload = json.loads(response.text[len(LABEL) :])
    assert payload == {"guess": model.answer(request)}
    parsed = parse_guess(response.text)
    assert parsed.valid
    assert parsed.value == payload["guess"]


async def test_no_latency_completes_without_suspending() -> None:
    coro = SurrogateModel().complete(_request(1))
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value.text.startswith(LABEL)
    assert stop.value.value.latency_s == 0.0


async def test_latency_makes_it_non_immediate_and_sleeps() -> None:
    model = SurrogateModel(latency_s=0.1)
    assert model.immediate is False
    started = time.perf_counter()
    response = await model.complete(_request(1))
    elapsed = time.perf_counter() - started
    assert 0.09 <= elapsed < 2.0
    assert response.latency_s == pytest.approx(0.1)
    assert response.text.startswith(LABEL)


async def test_latency_overlaps_across_concurrent_calls() -> None:
    model = SurrogateModel(latency_s=0.1)
    started = time.perf_counter()
    responses = await asyncio.gather(*(model.complete(_request(s)) for s in range(20)))
    elapsed = time.perf_counter() - started
    assert len(responses) == 20
    assert 0.09 <= elapsed < 1.0  # 20 sequential sleeps would take 2 s


async def test_aclose_is_harmless() -> None:
    model = SurrogateModel()
    await model.aclose()
    assert (await model.complete(_request(1))).ok
