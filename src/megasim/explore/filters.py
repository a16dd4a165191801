"""Agent filters as short text: ``age>=30``, ``model=a|b``, ``raw_text~hello``.

One syntax for the studio's URLs and the command line (``megasim survey --filter``).
Column names are checked against the table and values are bound as parameters, so a
filter can never inject SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS: tuple[str, ...] = (">=", "<=", "!=", "=", ">", "<", "~")
_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|!=|=|>|<|~)\s*(.*?)\s*$", re.S)


class FilterError(ValueError):
    """A filter that names no column of the table or cannot be read."""


@dataclass(frozen=True, slots=True)
class Filter:
    column: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"


def parse_filter(text: str) -> Filter:
    match = _PATTERN.match(text)
    if match is None:
        raise FilterError(
            f"cannot read filter {text!r}: expected COLUMN OP VALUE with OP one of "
            f"{' '.join(OPERATORS)} (e.g. age>=30, model=a|b, raw_text~hello)"
        )
    return Filter(match.group(1), match.group(2), match.group(3))


def quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _typed(value: str, kind: str, column: str) -> Any:
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            raise FilterError(f"filter on {column}: {value!r} is not a number") from None
    if kind == "bool":
        lowered = value.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise FilterError(f"filter on {column}: {value!r} is not true or false")
        return lowered in ("true", "1", "yes")
    return value


def where_clause(filters: Iterable[Filter], kinds: Mapping[str, str]) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` text and its parameters; ``kinds`` maps column -> number|bool|text."""
    clauses: list[str] = []
    params: list[Any] = []
    for f in filters:
        kind = kinds.get(f.column)
        if kind is None:
            raise FilterError(f"filter {f}: no column {f.column!r}; columns: {sorted(kinds)}")
        column = quote(f.column)
        if f.op == "~":
            clauses.append(f"CAST({column} AS VARCHAR) ILIKE ?")
            params.append(f"%{f.value}%")
        elif f.op == "=" and "|" in f.value:
            options = [_typed(v, kind, f.column) for v in f.value.split("|")]
            clauses.append(f"{column} IN ({', '.join('?' for _ in options)})")
            params.extend(options)
        elif f.op in ("=", "!=") and f.value.lower() in ("null", "none", ""):
            clauses.append(f"{column} IS {'' if f.op == '=' else 'NOT '}NULL")
        else:
            sql_op = {"=": "=", "!=": "IS DISTINCT FROM"}.get(f.op, f.op)
            clauses.append(f"{column} {sql_op} ?")
            params.append(_typed(f.value, kind, f.column))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
