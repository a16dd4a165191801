"""Check one LLM-written background against the agent's sampled attributes.

Rejections (the answer is retried with a new seed, then flagged ``rejected``):

- no JSON object in the text (code fences and leading prose are tolerated);
- ``name``, ``personality`` or ``story`` missing, not a string, or of an odd length
  (a story needs at least 20 characters and 5 words);
- ``age`` stated but not a whole number, or more than 1 year off the row's age;
- the story or personality says "N years old" / "N-year-old" with N more than 1 year off,
  unless the phrase is clearly about someone else or the past ("her 12-year-old
  daughter", "when she was 14 years old");
- the row's gender is female (male) and the text uses only male (female) third-person
  pronouns. Mixed pronouns ("she met her husband; he ...") and other genders pass: the
  heuristic only catches a story written about the wrong person.

Soft warnings (the background is accepted, the warning is recorded): the row's
``occupation`` or ``education`` is not mentioned, neither as the whole value nor as a
close form of each of its words ("nurse" ~ "nursing", "bachelor's degree" ~ "bachelor").
A small model often leaves these implicit, and the story is still usable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from megasim.model.parsing import extract_json_object
from megasim.population.backgrounds_prompt import (
    MAX_NAME,
    MAX_PERSONALITY,
    MAX_STORY,
    stated_age,
)

MIN_STORY = 20
MIN_STORY_WORDS = 5
MIN_PERSONALITY = 3

_AGE_RE = re.compile(r"\b(\d{1,3})\s*[- ]\s*years?\s*[- ]\s*old\b(?:\s+(\w+))?", re.IGNORECASE)
_PAST_OR_OTHER_BEFORE = frozenset(
    {"when", "since", "at", "until", "till", "by", "from", "age", "aged", "his", "her", "their",
     "my", "our", "its", "whose"}
)  # fmt: skip
_OTHER_AFTER = frozenset(
    {"son", "sons", "daughter", "daughters", "child", "children", "kid", "kids", "boy", "girl",
     "brother", "sister", "grandson", "granddaughter", "grandchild", "nephew", "niece",
     "dog", "cat", "horse", "car", "house", "company", "business", "when", "then", "twins"}
)  # fmt: skip
_MALE = re.compile(r"\b(?:he|him|his|himself)\b", re.IGNORECASE)
_FEMALE = re.compile(r"\b(?:she|her|hers|herself)\b", re.IGNORECASE)
_FEMALE_VALUES = frozenset({"female", "woman", "f", "w", "girl"})
_MALE_VALUES = frozenset({"male", "man", "m", "boy"})
_WORD_RE = re.compile(r"[a-z0-9]+")
_GENERIC_WORDS = frozenset({"degree", "of", "the", "a", "an", "and", "in", "s"})
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "phd": ("phd", "ph d", "doctorate", "doctoral"),
    "md": ("md", "medical degree"),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one answer: ``data`` holds the cleaned object when it parsed."""

    ok: bool
    data: dict[str, Any] | None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def _check_text(data: Mapping[str, Any], key: str, low: int, high: int) -> str | None:
    value = data.get(key)
    if value is None:
        return f"{key}: missing"
    if not isinstance(value, str):
        return f"{key}: expected a string, got {type(value).__name__}"
    size = len(value.strip())
    if size < low:
        return f"{key}: too short ({size} characters, at least {low})"
    if size > high:
        return f"{key}: too long ({size} characters, at most {high})"
    return None


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def ages_in_text(text: str) -> list[int]:
    """Ages the text gives its subject ("49 years old", "a 49-year-old"), skipping phrases
    about someone else or the past (see the module docstring)."""
    found = []
    for match in _AGE_RE.finditer(text):
        before = re.findall(r"[a-z]+", text[max(0, match.start() - 40) : match.start()].lower())
        if any(word in _PAST_OR_OTHER_BEFORE for word in before[-4:]):
            continue
        after = (match.group(2) or "").lower()
        if after in _OTHER_AFTER:
            continue
        found.append(int(match.group(1)))
    return found


def pronoun_mismatch(text: str, gender: Any) -> str | None:
    """A reason when the text refers to its subject only with the other gender's pronouns."""
    if not isinstance(gender, str):
        return None
    value = gender.strip().lower()
    if value in _FEMALE_VALUES:
        own, other, other_name = _FEMALE, _MALE, "male"
    elif value in _MALE_VALUES:
        own, other, other_name = _MALE, _FEMALE, "female"
    else:
        return None
    if other.search(text) and not own.search(text):
        return f"gender: the story uses only {other_name} pronouns for a {value} person"
    return None


def _stem(word: str) -> str:
    """A crude prefix stem: "worker" -> "work", "nurse" -> "nurs", "engineer" -> "engin"."""
    return word if len(word) <= 4 else word[: max(4, len(word) - 3)]


def mentions(text: str, value: str) -> bool:
    """Whether ``text`` names ``value`` or a close form of each of its words."""
    norm_text = " ".join(_WORD_RE.findall(text.lower()))
    norm_value = " ".join(_WORD_RE.findall(value.lower()))
    if not norm_value or f" {norm_value} " in f" {norm_text} ":
        return True
    if any(f" {syn} " in f" {norm_text} " for syn in _SYNONYMS.get(norm_value, ())):
        return True
    words = [w for w in norm_value.split() if w not in _GENERIC_WORDS] or norm_value.split()
    text_words = norm_text.split()
    return all(any(t.startswith(_stem(w)) for t in text_words) for w in words)


def validate_background(text: str, attributes: Mapping[str, Any]) -> Verdict:
    """Parse and check one answer for the agent with these ``attributes``."""
    data = extract_json_object(text)
    if data is None:
        return Verdict(False, None, ("parse: no JSON object in the answer",))
    reasons: list[str] = []
    for key, low, high in (
        ("name", 1, MAX_NAME),
        ("personality", MIN_PERSONALITY, MAX_PERSONALITY),
        ("story", MIN_STORY, MAX_STORY),
    ):
        problem = _check_text(data, key, low, high)
        if problem:
            reasons.append(problem)
    if not reasons and len(re.findall(r"[^\W\d_]{2,}", str(data["story"]))) < MIN_STORY_WORDS:
        reasons.append(f"story: fewer than {MIN_STORY_WORDS} words")
    if reasons:
        return Verdict(False, None, tuple(reasons))
    clean: dict[str, Any] = {k: " ".join(str(data[k]).split()) for k in ("name", "personality")}
    clean["story"] = " ".join(str(data["story"]).split())
    row_age = stated_age(attributes)
    if row_age is not None and data.get("age") is not None:
        age = _whole_number(data["age"])
        if age is None:
            reasons.append(f"age: not a whole number: {data['age']!r}")
        elif abs(age - row_age) > 1:
            reasons.append(f"age: states {age}, the agent is {row_age}")
        else:
            clean["age"] = age
    prose = f"{clean['personality']} {clean['story']}"
    if row_age is not None:
        wrong = sorted({a for a in ages_in_text(prose) if abs(a - row_age) > 1})
        if wrong:
            reasons.append(f"age: the story says {wrong[0]} years old, the agent is {row_age}")
    mismatch = pronoun_mismatch(prose, attributes.get("gender"))
    if mismatch:
        reasons.append(mismatch)
    if reasons:
        return Verdict(False, clean, tuple(reasons))
    whole = json.dumps(data, ensure_ascii=False)
    warnings = tuple(
        f"warning: {key} {value!r} not mentioned"
        for key in ("occupation", "education")
        if isinstance(value := attributes.get(key), str) and not mentions(whole, value)
    )
    return Verdict(True, clean, (), warnings)
