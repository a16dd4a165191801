"""Checking one LLM-written background against the agent's attributes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from megasim.population.backgrounds_prompt import (
    attribute_columns,
    background_messages,
    background_schema,
    compose_background,
)
from megasim.population.backgrounds_validate import (
    ages_in_text,
    extract_json_object,
    mentions,
    pronoun_mismatch,
    validate_background,
)

ROW: dict[str, Any] = {
    "age": 49,
    "gender": "female",
    "education": "high school",
    "occupation": "nurse",
    "income": 41234.5,
}
STORY = (
    "Maria grew up in a fishing town and finished high school there. She has worked as a "
    "nurse at the county hospital for twenty years and raises two sons."
)


def answer(**overrides: Any) -> str:
    data: dict[str, Any] = {
        "name": "Maria Lopez",
        "personality": "Warm, practical and stubborn.",
        "story": STORY,
        "age": 49,
    }
    data.update(overrides)
    return json.dumps({k: v for k, v in data.items() if v is not ...})


def test_valid_answer_is_accepted_and_cleaned() -> None:
    verdict = validate_background(answer(story="  " + STORY.replace(" ", "  ")), ROW)
    assert verdict.ok, verdict.reasons
    assert verdict.data == {
        "name": "Maria Lopez",
        "personality": "Warm, practical and stubborn.",
        "story": STORY,
        "age": 49,
    }
    assert verdict.warnings == ()


@pytest.mark.parametrize(
    "text",
    [
        "```json\n" + answer() + "\n```",
        "Sure! Here is the background:\n" + answer() + "\nHope this helps.",
        "{not json} then " + answer(),
    ],
)
def test_json_is_found_in_fences_and_prose(text: str) -> None:
    assert validate_background(text, ROW).ok


def test_extract_json_object_none_for_garbage() -> None:
    assert extract_json_object("no braces here") is None
    assert extract_json_object('{"truncated": "ans') is None
    assert extract_json_object("[1, 2]") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I cannot do that.", "parse: no JSON object"),
        (answer(name=...), "name: missing"),
        (answer(name=""), "name: too short"),
        (answer(personality=42), "personality: expected a string"),
        (answer(story="Too short."), "story: too short"),
        (answer(story="word " * 400), "story: too long"),
        (answer(age=62), "age: states 62, the agent is 49"),
        (answer(age="forty"), "age: not a whole number"),
        (answer(story=STORY + " She is 35 years old."), "the story says 35 years old"),
        (answer(story="A 62-year-old nurse who loves the sea, Maria works nights."), "says 62"),
        (
            answer(story="He grew up by the sea and he became a nurse like his father."),
            "gender: the story uses only male pronouns for a female person",
        ),
    ],
)
def test_rejections_name_the_reason(text: str, reason: str) -> None:
    verdict = validate_background(text, ROW)
    assert not verdict.ok
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_age_within_one_year_and_missing_age_are_fine() -> None:
    assert validate_background(answer(age=50), ROW).ok
    assert validate_background(answer(age=48.0), ROW).ok
    assert validate_background(answer(age=...), ROW).ok  # not stated: nothing to contradict
    assert validate_background(answer(story=STORY + " She is 50 years old."), ROW).ok
    no_age = {k: v for k, v in ROW.items() if k != "age"}
    assert validate_background(answer(age=12), no_age).ok  # no age attribute: not checked


def test_ages_of_others_and_the_past_are_not_the_agents() -> None:
    text = (
        "When she was 14 years old she left home. Her 12-year-old daughter plays chess, "
        "and a 3-year-old dog sleeps by the door. Today she is a 49-year-old nurse."
    )
    assert ages_in_text(text) == [49]
    assert ages_in_text("She is 30 years old and at 20 years old she moved.") == [30]


def test_pronoun_heuristic_only_catches_one_sided_stories() -> None:
    assert pronoun_mismatch("She met her husband; he is a baker.", "female") is None
    assert pronoun_mismatch("He loves his job.", "female") is not None
    assert pronoun_mismatch("She loves her job.", "male") is not None
    assert pronoun_mismatch("They love their job.", "male") is None
    assert pronoun_mismatch("He loves his job.", "non-binary") is None  # not checked
    assert pronoun_mismatch("She sings.", None) is None


def test_missing_occupation_or_education_is_only_a_warning() -> None:
    story = "Maria grew up in a fishing town. She spends her weekends sailing with friends."
    verdict = validate_background(answer(story=story), ROW)
    assert verdict.ok
    assert verdict.warnings == (
        "warning: occupation 'nurse' not mentioned",
        "warning: education 'high school' not mentioned",
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("She studied nursing.", "nurse"),
        ("An ENGINEERING graduate.", "engineer"),
        ("He holds a bachelor in history.", "bachelor's degree"),
        ("After her doctorate she taught.", "PhD"),
        ("A professor of game theory.", "game theory professor"),
        ("She works in a factory.", "worker"),
    ],
)
def test_mentions_accepts_close_forms(text: str, value: str) -> None:
    assert mentions(text, value)


def test_mentions_rejects_absent_values() -> None:
    assert not mentions("She paints landscapes.", "economist")
    assert not mentions("A professor of economics.", "game theory professor")


def test_prompt_lists_attributes_and_schema_bounds_the_age() -> None:
    columns = ["agent_id", "group", "age", "gender", "model", "prompt_variant", "background"]
    assert attribute_columns([*columns, "background_status", "occupation"]) == [
        "age",
        "gender",
        "occupation",
    ]
    system, user = background_messages(ROW)
    assert system.role == "system"
    assert "- age: 49" in user.content
    assert "- income: 41,234" in user.content or "- income: 41,235" in user.content
    assert '"age": 49' in user.content
    schema = background_schema(ROW)
    assert schema["required"] == ["name", "personality", "story", "age"]
    assert schema["properties"]["age"] == {"type": "integer", "minimum": 48, "maximum": 50}
    no_age = background_schema({"gender": "male"})
    assert "age" not in no_age["properties"]
    assert "age" not in no_age["required"]
    assert '"age"' not in background_messages({"gender": "male"})[1].content


def test_compose_background() -> None:
    text = compose_background("Maria Lopez", "Warm and practical", "She is a nurse.")
    assert text == "Name: Maria Lopez. Personality: Warm and practical. Story: She is a nurse."


def test_story_needs_words() -> None:
    verdict = validate_background(answer(story="2023-11-07T04:17:54.228Z0:1:500000+0:1:19."), ROW)
    assert verdict.reasons == ("story: fewer than 5 words",)
