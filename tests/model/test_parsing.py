"""Tests for megasim.model.parsing: odd LLM answers to "guess a number in [0, 100]"."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megasim.model.parsing import ParsedAnswer, parse_guess

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _words(n: int) -> str:
    """English words for 0 <= n <= 100, hyphenated like "thirty-three"."""
    if n == 100:
        return "one hundred"
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


VALID: list[tuple[str, float]] = [
    ("33", 33),
    ("  42\n", 42),
    ("33.", 33),
    ("+7", 7),
    ("3.3e1", 33),
    ("0", 0),
    ("100", 100),
    (".5", 0.5),
    ("50%", 50),
    ("−0", 0),
    ('{"guess": 33}', 33),
    ('{"guess": 33.3, "reasoning": "2/3 of 50"}', 33.3),
    ('```json\n{"guess": 27}\n```', 27),
    ('Sure! ```json\n{"reasoning": "avg 50", "guess": 22.5}\n``` Good luck', 22.5),
    ('{"guess": 33.3, "reasoning": "abc', 33.3),
    ('{"reasoning": "others pick 50", "guess": 30', 30),
    ('{"guess": "33"}', 33),
    ('{"guess": "33', 33),
    ('{"Guess": "thirty"}', 30),
    ('{"answer": 12}', 12),
    ('{"value": 8}', 8),
    ('{"result": {"number": 19}}', 19),
    ("{'guess': 44}", 44),
    ('{"reasoning": "I think 40 is fine"}', 40),
    ("My guess is 33.", 33),
    ("**33**", 33),
    ("I choose 22.5", 22.5),
    ("Answer: 0", 0),
    ("I'll go with 42!", 42),
    ("**Final Answer:** 35", 35),
    ("I'm going to go with 27.", 27),
    ("I'd say around 30", 30),
    ("I guess thirty-three", 33),
    ("twenty two", 22),
    ("thirty-three point three", 33.3),
    ("Seventy Seven", 77),
    ("I guess two", 2),
    ("zero", 0),
    ("fifty percent", 50),
    ("between 20 and 30", 25),
    ("20-30", 25),
    ("20–30", 25),
    ("20 to 30", 25),
    ("My guess: between 10 and 20", 15),
    ("2/3 of 50 is 33.3, so my guess is 33", 33),
    ("two thirds of fifty is thirty three", 33),
    ("Others pick between 20 and 30, so I pick 22", 22),
    ("Answer: 33. Others might choose 50.", 33),
    ("I guess 50 is too high, so my answer is 34", 34),
    ("The average is 50. 2/3 of that is 33.33. Therefore, 31.", 31),
    ("If everyone picks 50, then 2/3 * 50 = 33.3", 33.3),
    ("My guess is 0.5 %", 0.5),
    ("My score: 33/100", 33),
    ("1st place needs 12", 12),
    ("Guess — 18", 18),
]

INVALID: list[tuple[str | None, str]] = [
    ("232141", "out of range [0, 100]: 232141"),
    ("1,000", "out of range [0, 100]: 1000"),
    ("-5", "out of range [0, 100]: -5"),
    ("−5", "out of range [0, 100]: -5"),
    ("The answer is negative 5", "out of range [0, 100]: -5"),
    ("My guess is 150", "out of range [0, 100]: 150"),
    ('{"guess": 232141}', "out of range [0, 100]: 232141"),
    ('{"guess": 1e999}', "not a finite number"),
    ('{"guess": NaN}', "not a finite number"),
    ("1e400", "not a finite number"),
    ('{"guess": null, "reasoning": "maybe 30"}', "not a number"),
    ('{"guess": true}', "not a number"),
    ('{"guess": ', "no value for 'guess'"),
    ('{"guess": "no idea"}', "no number found"),
    ("", "empty answer"),
    ("   \n\t", "empty answer"),
    (None, "empty answer"),
    ("I don't know", "no number found"),
    ("nan", "no number found"),
    ("version v1.2.3", "no number found"),
    ("\x00\xff\ufffe\ud800 garbage", "no number found"),
    ("{" * 5000, "no number found"),
    ('{"a":' * 3000, "no number found"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_answers(text: str, expected: float) -> None:
    res = parse_guess(text)
    assert res.valid, res
    assert res.reason is None
    assert res.value == pytest.approx(expected)


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_answers(text: str | None, reason: str) -> None:
    res = parse_guess(text)
    assert not res.valid
    assert res.value is None
    assert res.reason is not None
    assert reason in res.reason


def test_bounds_and_field_are_honoured() -> None:
    assert parse_guess("7", low=10, high=20).reason == "out of range [10, 20]: 7"
    assert parse_guess("15", low=10, high=20).value == 15
    assert parse_guess("0.25", low=0, high=1).value == 0.25
    assert parse_guess('{"bid": 3, "guess": 9}', field="bid").value == 3
    assert parse_guess('{"bid": 3', field="bid").value == 3


def test_json_takes_priority_over_prose() -> None:
    assert parse_guess('My guess is 10. {"guess": 40}').value == 40


def test_huge_input_is_fast_and_safe() -> None:
    assert parse_guess("blah " * 200_000 + "my guess is 12").value == 12
    assert not parse_guess("guess " * 50_000).valid


def _check_invariants(res: ParsedAnswer, low: float, high: float) -> None:
    if res.valid:
        assert res.value is not None
        assert res.reason is None
        assert low <= res.value <= high
        assert math.isfinite(res.value)
    else:
        assert res.value is None
        assert res.reason


@settings(max_examples=500)
@given(st.text())
def test_never_raises_on_arbitrary_text(text: str) -> None:
    _check_invariants(parse_guess(text), 0.0, 100.0)


@given(st.text(alphabet=st.sampled_from(list('0123456789 .,-+/{}":eE%guessanswerthirtyone'))))
def test_never_raises_on_number_like_noise(text: str) -> None:
    _check_invariants(parse_guess(text), 0.0, 100.0)


@given(st.floats(min_value=0.0, max_value=100.0, allow_nan=False))
def test_formatted_floats_round_trip(x: float) -> None:
    for text in (f"{x}", f"{x:.2f}", f"My guess is {x:.1f}.", json.dumps({"guess": x})):
        expected = float(text.removeprefix("My guess is ").rstrip(".")) if "{" not in text else x
        res = parse_guess(text)
        assert res.valid, (text, res)
        assert res.value == expected, text


@pytest.mark.parametrize("n", range(101))
def test_number_words_round_trip(n: int) -> None:
    words = _words(n)
    for text in (words, f"I guess {words}.", f"My answer is {words.replace('-', ' ')}"):
        res = parse_guess(text)
        assert res.value == n, (text, res)
