"""Shared pieces of the bad-input campaign: hypothesis settings, value strategies,
structured mutations of valid documents, and checks that a CLI call failed cleanly."""

from __future__ import annotations

import copy
import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from typer.testing import Result

# MEGASIM_FUZZ_SCALE=10 runs ten times the cases; MEGASIM_FUZZ_RANDOM=1 draws new ones
# (CI is derandomized: the same cases every run, so a red build is never a fluke)
SCALE = float(os.environ.get("MEGASIM_FUZZ_SCALE", "1"))
CASES: Counter[str] = Counter()  # generated cases per campaign part (printed at the end)


def fuzz(examples: int) -> Any:
    """Hypothesis settings for ``examples`` cases (times MEGASIM_FUZZ_SCALE)."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=os.environ.get("MEGASIM_FUZZ_RANDOM") != "1",
        database=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: CI time
        suppress_health_check=list(HealthCheck),
    )


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=16)
# words the code gives meaning to: a mutation that hits one reaches deeper validation
WORDS = st.sampled_from(
    [
        "",
        "-1",
        "0",
        "1e309",
        "nan",
        "../x",
        "/",
        "P1",
        "P9",
        "surrogate",
        "scripted",
        "openai",
        "chat_opinion",
        "guess_two_thirds",
        "categorical",
        "normal",
        "conditional",
        "derived",
        "uniform",
        "exact",
        "random",
        "group",
        "model",
        "prompt_variant",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.integers(min_value=-3, max_value=12),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    WORDS,
)
PLAUSIBLE = st.one_of(
    st.integers(-2, 12), st.floats(-1, 2), WORDS, st.sampled_from([10**12, 2**64, 1e-300])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT | WORDS, inner, max_size=3),
    max_leaves=6,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a nested dict/list document (the root excluded)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield (*prefix, index)
            yield from paths(value, (*prefix, index))


def mutate(
    doc: dict[str, Any], data: st.DataObject, rounds: int = 3
) -> tuple[dict[str, Any], set[str]]:
    """A copy of ``doc`` with 1..``rounds`` structured edits (replace a value, delete a key,
    add an unknown key, wrap a value in a list); returns it and the top-level keys touched."""
    doc = copy.deepcopy(doc)
    touched: set[str] = set()
    for _ in range(data.draw(st.integers(1, rounds))):
        where = sorted(paths(doc), key=repr)
        if not where:
            doc = data.draw(st.dictionaries(TEXT | WORDS, VALUES, max_size=3))
            touched |= {str(k) for k in doc}
            continue
        path = data.draw(st.sampled_from(where))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        op = data.draw(st.sampled_from(["set", "set", "nudge", "nudge", "delete", "add", "wrap"]))
        if op == "set":
            parent[last] = data.draw(VALUES)
        elif op == "nudge":  # a plausible value: reaches the checks behind the type checks
            parent[last] = data.draw(PLAUSIBLE)
        elif op == "delete":
            del parent[last]
        elif op == "add" and isinstance(parent[last], dict):
            parent[last][data.draw(TEXT | WORDS)] = data.draw(VALUES)
        else:
            parent[last] = [parent[last]]
        touched.add(str(path[0]))
    return doc, touched


def digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (paths relative), but those under ``skip``."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(skip):
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def clean_exit(result: Result, allowed: tuple[int, ...] = (0, 1, 2)) -> None:
    """The CLI ended with a documented code and no traceback; a failure says ``error:``."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise AssertionError(f"traceback (exit {result.exit_code}):\n{trace}\n{result.output}")
    assert result.exit_code in allowed, result.output
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        assert "error" in result.output.lower() or "usage" in result.output.lower(), result.output
