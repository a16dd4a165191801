"""Hand-written YAML in, ``<file>: <field path>: <message>`` errors out.

Population specs and the models file of ``megasim population backgrounds`` are both
written by hand, so both report problems by file and field. This lives in ``population``,
not in ``config``: ``config`` imports ``population`` (a run config embeds a spec), so the
reverse import would be a cycle between layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from megasim import yaml_strict

_MISSING = object()


def read_yaml_file(
    path: Path, error: Callable[[str], Exception], yaml_problem: str = "YAML error"
) -> Any:
    """Parse ``path`` (duplicate keys refused); every failure raises ``error(message)``
    with a message that starts with the file name."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise error(f"{path}: cannot read: {reason or exc}") from None
    try:
        return yaml_strict.load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: {yaml_problem}{yaml_strict.describe(exc)}") from None


def field_path(loc: Iterable[int | str], data: object, tags: Iterable[str]) -> list[str]:
    """The field path as the user wrote it.

    Pydantic puts the tag of a discriminated union into error locations
    (``attributes.age.normal.std``, ``models.x.local.parallel``); walking the input
    drops those: an item that is no key of the input but the value of one of its
    ``tags`` keys is a tag.
    """
    tag_keys = tuple(tags)
    out: list[str] = []
    cur: object = data
    for item in loc:
        if isinstance(cur, dict):
            match = next((k for k in cur if k == item or str(k) == str(item)), _MISSING)
            if match is not _MISSING:
                out.append(str(item))
                cur = cur[match]
                continue
            if any(cur.get(tag) == item for tag in tag_keys):
                continue
        elif isinstance(cur, list) and isinstance(item, int) and 0 <= item < len(cur):
            out.append(str(item))
            cur = cur[item]
            continue
        out.append(str(item))
        cur = None
    return out


def dotted(path: Iterable[str]) -> str:
    """Join a field path; a key with a line break or blanks is quoted, so each problem
    stays on one line."""
    return ".".join(p if p.isprintable() and p.strip() == p != "" else repr(p) for p in path)
