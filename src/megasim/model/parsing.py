"""Parse a numeric guess out of an LLM's free text ("guess a number in [low, high]").

Priority, most explicit first (the first rule that yields a value decides):

1. Plain number: the whole stripped text is a number ("33", "+3.3e1", "50%", "1,000").
   One regex, so the common well-formed case costs about 1.5 µs.
2. JSON: the first object (fenced or not) holding ``field`` or an alias ("answer",
   "number", "value"), looked up case-insensitively, also one level deep. String
   values ("33", "thirty") are parsed as prose. Truncated or malformed objects fall
   back to a ``"key": value`` regex. A key that is present is authoritative: if its
   value holds no number the answer is invalid, as the model did name its answer there.
3. Prose, after number words become digits (text2num; only when such a word occurs)
   and ratios are dropped ("2/3", "2 thirds": the p factor, rarely the guess):
   a. the value after the last *strong* cue ("my guess is", "final answer:",
      "I choose", "I'll go with"): first-person cues name the model's own answer,
      while reasoning often talks about others ("others pick 50");
   b. the value after the last weak cue ("guess", "pick", "answer", "number is");
   c. the last number in the text, as reasoning usually ends with the answer.
   A range ("between 20 and 30", "20-30", "20 to 30") counts, as its midpoint, only
   in one of these answer positions. "zero", "one", "two" (which text2num leaves as
   words) count only after a cue or as the whole answer.

The value must be finite and within [low, high]. ``parse_guess`` never raises: anything
else is invalid with a reason. Texts over 4096 chars keep only their first and last 2048.
Decimal commas ("33,5") are not supported: commas are thousands separators or lists.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from typing import Any, NamedTuple

from text_to_num import alpha2digit

__all__ = ["ParsedAnswer", "parse_guess"]


class ParsedAnswer(NamedTuple):
    """Outcome of parsing one answer: ``value`` is None and ``reason`` set when invalid.

    A NamedTuple because it is created up to a million times per round."""

    value: float | None
    valid: bool
    reason: str | None


_ALIASES = ("answer", "number", "value")
_MAX_CHARS = 4096
_HALF = _MAX_CHARS // 2
_MISSING = object()
_DECODER = json.JSONDecoder()
_SMALL = {"zero": 0.0, "one": 1.0, "two": 2.0, "three": 3.0}

# An unsigned number: thousands-separated, decimal, or ".5"; optional exponent; not glued
# to a following letter or digit ("1st", "3rds" are no numbers).
_UNUM = (
    r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[eE][+-]?[0-9]+)?(?!\w)"
)
_LB = r"(?<![\w./])"  # not inside a word, a version ("1.2.3") or a denominator ("/100")
_NUM = rf"{_LB}[+-]?{_UNUM}"
# Groups 1-2: "between A and B"; 3-4: "A-B" / "A to B"; 5: a single number.
_VALUE = (
    rf"between\s+({_NUM})\s+and\s+({_NUM})"
    rf"|(?:from\s+)?({_NUM})\s*(?:-|to\b)\s*({_LB}{_UNUM})"
    rf"|({_NUM})"
)
# Group 6: a small number word that text2num leaves alone, ending the phrase.
_SMALL_RX = r"(zero|one|two|three)(?![\w-])(?!\s+(?:of|or|and|hundred|thirds?|more|less|times)\b)"
_FILL_WORDS = (
    "is|was|will|would|be|of|the|my|a|an|number|value|final|answer|guess|to|with|as|it|"
    "it's|that|this|now|then|so|go|going|say|around|about|approximately|roughly|exactly|"
    "just|probably|likely|maybe|i|i'll|i'd|at|here|in|range|equal|equals|should|simply|"
    "definitely|therefore|thus|still"
)
# One punctuation character or whole word per step, at most 8 steps: no ambiguity, so
# no catastrophic backtracking, and repetitive text ("guess guess ...") stays linear.
_FILLER = rf"\s*(?:(?:[:=*_`\"'(\[~≈>]|-(?=\s)|\b(?:{_FILL_WORDS})\b)\s*){{0,8}}"
_STRONG_CUE = (
    r"\b(?:(?:my|our)\s+(?:final\s+|best\s+)?(?:guess|answer|choice|number|pick|selection"
    r"|estimate|submission|bid)|final\s+(?:guess|answer|choice|number|pick)"
    r"|the\s+(?:final\s+)?answer|(?:guess|answer|choice)\s*[:=]"
    r"|i(?:'ll|'m|'d|\s+will|\s+would|\s+am|\s+shall)?(?:\s+going\s+to|\s+gonna)?\s+"
    r"(?:guess(?:ing)?|choos(?:e|ing)|chose|pick(?:ing)?|select(?:ing)?|go(?:ing)?\s+with"
    r"|submit(?:ting)?|say|answer))"
)
_WEAK_CUE = (
    r"\b(?:guess(?:ing|ed)?|answer(?:ing|ed)?|choos(?:e|ing)|chose|choice|pick(?:ing|ed)?"
    r"|select(?:ing|ed)?|go(?:ing)?\s+with|went\s+with|submit(?:ting|ted)?|final|number\s+is)\b"
)
_TAIL = rf"(?:{_VALUE}|{_SMALL_RX})"
_STRONG_RE = re.compile(_STRONG_CUE + _FILLER + _TAIL, re.IGNORECASE)
_WEAK_RE = re.compile(_WEAK_CUE + _FILLER + _TAIL, re.IGNORECASE)
_VALUE_RE = re.compile(_VALUE, re.IGNORECASE)
_ONLY_SMALL_RE = re.compile(rf"[\W_]*{_SMALL_RX}[\W_]*", re.IGNORECASE)
_PLAIN_RE = re.compile(rf"\s*([+-]?{_UNUM})\s*%?\s*\.?\s*")
_WORDISH_RE = re.compile(
    r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twel|thir|fif|"
    r"twenty|forty|hundred|minus|negative)",
    re.IGNORECASE,
)
_MINUS_WORD_RE = re.compile(r"(?<![0-9])(?<![0-9]\s)\b(?:minus|negative)\s+(?=[0-9.])", re.I)
_RATIO_RE = re.compile(
    r"(?<![\w./])[0-9]{1,2}\s*/\s*[0-9]{1,2}(?![0-9]|\.[0-9])"
    r"|(?<![\w.])[0-9]+(?:\.[0-9]+)?\s*-?\s*(?:thirds?|3rds?|halves|quarters?|fourths?|4ths?"
    r"|fifths?|5ths?|tenths?|10ths?)\b",
    re.IGNORECASE,
)
# Unicode minus and en dash ("20–30") become "-", an em dash is punctuation.
_TRANSLATE = str.maketrans("\u2212\u2013\u2014\u2018\u2019\u201c\u201d\u00a0", "-- ''\"\" ")


def _invalid(reason: str) -> ParsedAnswer:
    return ParsedAnswer(None, False, reason)


def _fmt(x: float) -> str:
    x = float(x)  # bounds may be ints
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)


def _check(v: float, low: float, high: float) -> ParsedAnswer:
    if not math.isfinite(v):
        return _invalid(f"not a finite number: {v}")
    if low <= v <= high:
        return ParsedAnswer(v + 0.0, True, None)  # + 0.0 turns -0.0 into 0.0
    return _invalid(f"out of range [{_fmt(low)}, {_fmt(high)}]: {_fmt(v)}")


def _num(token: str) -> float:
    return float(token.replace(",", ""))


def _value(m: re.Match[str]) -> float:
    """Value of a ``_VALUE`` match (groups 1-5), optionally followed by a small word (6)."""
    g = m.groups()
    if g[0] is not None:
        return (_num(g[0]) + _num(g[1])) / 2
    if g[2] is not None:
        return (_num(g[2]) + _num(g[3])) / 2
    if g[4] is not None:
        return _num(g[4])
    return _SMALL[g[5].lower()]


def _last(rx: re.Pattern[str], s: str) -> re.Match[str] | None:
    found = None
    for found in rx.finditer(s):  # noqa: B007 -- keep the last match
        pass
    return found


def _prose(s: str, low: float, high: float) -> ParsedAnswer:
    """Rule 3: cue words, else the last number or range, else a lone small number word."""
    if not s.isascii():
        s = s.translate(_TRANSLATE)
    if _WORDISH_RE.search(s):
        try:
            converted: str = alpha2digit(s, "en")
            s = converted
        except Exception:  # text2num may choke on odd input; keep the raw text
            pass
        s = _MINUS_WORD_RE.sub("-", s)
    s = _RATIO_RE.sub(" ", s)
    for rx in (_STRONG_RE, _WEAK_RE, _VALUE_RE):
        m = _last(rx, s)
        if m is not None:
            return _check(_value(m), low, high)
    m = _ONLY_SMALL_RE.fullmatch(s)
    if m is not None:
        return _check(_SMALL[m.group(1).lower()], low, high)
    return _invalid("no number found")


def _from_value(v: Any, key: str, low: float, high: float) -> ParsedAnswer:
    """Parse the value a JSON key holds (authoritative, see rule 2)."""
    if isinstance(v, str):
        m = _PLAIN_RE.fullmatch(v)
        return _check(_num(m.group(1)), low, high) if m else _prose(v, low, high)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _invalid(f"field {key!r} is not a number: {repr(v)[:40]}")
    try:
        return _check(float(v), low, high)
    except OverflowError:
        return _invalid(f"out of range [{_fmt(low)}, {_fmt(high)}]: {str(v)[:40]}...")


def _lookup(obj: dict[Any, Any], keys: tuple[str, ...], depth: int = 0) -> tuple[str, Any]:
    lowered = {k.strip().lower(): v for k, v in obj.items() if isinstance(k, str)}
    for k in keys:
        if k in lowered:
            return k, lowered[k]
    if depth < 1:
        for v in obj.values():
            if isinstance(v, dict):
                hit = _lookup(v, keys, depth + 1)
                if hit[1] is not _MISSING:
                    return hit
    return "", _MISSING


@lru_cache(maxsize=64)
def _keys_for(field: str) -> tuple[tuple[str, ...], re.Pattern[str]]:
    keys = tuple(dict.fromkeys((field.strip().lower(), *_ALIASES)))
    alt = "|".join(re.escape(k) for k in keys)
    # "key": value, where value may be an unterminated string or be missing (truncated).
    rx = re.compile(rf"[\"']({alt})[\"']\s*:\s*(\"[^\"]*\"?|'[^']*'?|[^\s,}}\]][^,}}\]\n]*)?", re.I)
    return keys, rx


def _from_json(s: str, field: str, low: float, high: float) -> ParsedAnswer | None:
    """Rule 2; None when no object names the field, so prose parsing applies."""
    keys, key_re = _keys_for(field)
    start = s.find("{")
    for _ in range(8):
        if start < 0:
            break
        try:
            obj, _end = _DECODER.raw_decode(s, start)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            key, v = _lookup(obj, keys)
            if v is not _MISSING:
                return _from_value(v, key, low, high)
        start = s.find("{", start + 1)
    m = key_re.search(s, s.find("{"))
    if m is None:
        return None
    if m.group(2) is None:
        return _invalid(f"no value for {m.group(1)!r} (truncated JSON?)")
    return _from_value(m.group(2).strip().strip("\"'"), m.group(1), low, high)


@lru_cache(maxsize=16)
def _flat_json_re(field: str) -> re.Pattern[str]:
    """``{"<field>": <number>}``, optionally after a ``[label]`` such as ``[surrogate]``:
    the shape structured output usually takes, matched without the JSON decoder."""
    return re.compile(
        rf'\s*(?:\[[\w-]+\]\s*)?\{{\s*"{re.escape(field)}"\s*:\s*([+-]?{_UNUM})\s*\}}\s*'
    )


def _parse(text: str, low: float, high: float, field: str) -> ParsedAnswer:
    m = _PLAIN_RE.fullmatch(text)
    if m is not None:
        return _check(_num(m.group(1)), low, high)
    m = _flat_json_re(field).fullmatch(text)
    if m is not None:
        return _check(_num(m.group(1)), low, high)
    s = text if len(text) <= _MAX_CHARS else f"{text[:_HALF]}\n{text[-_HALF:]}"
    if not s.strip():
        return _invalid("empty answer")
    if "{" in s:
        res = _from_json(s, field, low, high)
        if res is not None:
            return res
    return _prose(s, low, high)


def parse_guess(
    text: str | None, low: float = 0.0, high: float = 100.0, field: str = "guess"
) -> ParsedAnswer:
    """Parse a guess in [low, high] from ``text``; never raises (see module docstring)."""
    if text is None:
        return _invalid("empty answer")
    if not isinstance(text, str):
        return _invalid(f"not a string: {type(text).__name__}")
    try:
        return _parse(text, low, high, field)
    except Exception as exc:  # last resort: the contract is to never raise
        return _invalid(f"unparseable answer ({type(exc).__name__})")


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (inside code fences or after prose), else None;
    only the first 20,000 characters are searched."""
    text = text[:20_000]
    start = text.find("{")
    while start != -1:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None
