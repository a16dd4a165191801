"""Checks across attributes: references, cycles, column kinds and conditional case keys.

They run when the spec is validated, so a bad spec fails on load with a field
path rather than halfway through sampling a million agents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from megasim.population.base import DEFAULTED_ATTRIBUTES, RESERVED_COLUMNS
from megasim.population.distributions import (
    DEFAULT_CASE,
    CategoricalDist,
    ConditionalDist,
    ConstantDist,
    DerivedDist,
    Distribution,
    Kind,
    SequenceDist,
    scalar_kind,
    spec_error,
)


def _list(names: Iterable[object] | None) -> str:
    shown = [str(n) for n in names or ()]
    return ", ".join(shown) if shown else "none"


def references(dist: Distribution, path: str) -> list[tuple[str, str]]:
    """(field path, referenced attribute) for every reference in ``dist``, cases included."""
    if isinstance(dist, DerivedDist):
        return [(f"{path}.from", dist.from_)]
    if isinstance(dist, ConditionalDist):
        refs = [(f"{path}.given", dist.given)]
        for key, case in dist.cases.items():
            refs += references(case, f"{path}.cases.{key}")
        return refs
    return []


def topological_order(attributes: Mapping[str, Distribution]) -> list[str]:
    """Declaration order, except that every attribute comes after those it references."""
    deps = {n: [ref for _, ref in references(d, n)] for n, d in attributes.items()}
    order: list[str] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in stack:
            cycle = [*stack[stack.index(name) :], name]
            raise spec_error(f"attributes: circular reference: {' -> '.join(cycle)}")
        stack.append(name)
        for dep in deps[name]:
            if dep in attributes:
                visit(dep)
        stack.pop()
        done.add(name)
        order.append(name)

    for name in attributes:
        visit(name)
    return order


def analyse(attributes: Mapping[str, Distribution], groups: int | str) -> dict[str, Kind]:
    """Validate the attribute graph; return each attribute's column kind."""
    for name in attributes:
        if not name or name in RESERVED_COLUMNS:
            raise spec_error(f"attributes.{name}: name is reserved or empty")
    for name, dist in attributes.items():
        for path, ref in references(dist, f"attributes.{name}"):
            if ref not in attributes:
                known = _list(attributes)
                raise spec_error(f"{path}: unknown attribute {ref!r} (defined: {known})")
    kinds: dict[str, Kind] = {}
    values: dict[str, tuple[str, ...] | None] = {}
    for name in topological_order(attributes):
        kinds[name], values[name] = _describe(attributes[name], f"attributes.{name}", kinds, values)
    for name in DEFAULTED_ATTRIBUTES:
        if name in kinds and kinds[name] != "str":
            raise spec_error(f"attributes.{name}: must be text, got {kinds[name]} values")
    if isinstance(groups, str) and groups not in kinds:
        raise spec_error(f"groups: unknown attribute {groups!r} (defined: {_list(attributes)})")
    if isinstance(groups, str) and kinds[groups] == "float":
        raise spec_error(f"groups: {groups!r} is real-valued; group by a categorical attribute")
    return kinds


def _describe(
    dist: Distribution,
    path: str,
    kinds: Mapping[str, Kind],
    values: Mapping[str, tuple[str, ...] | None],
) -> tuple[Kind, tuple[str, ...] | None]:
    """Column kind of ``dist`` and, for text, its possible values when statically known."""
    if isinstance(dist, CategoricalDist):
        return "str", tuple(dist.weights)
    if isinstance(dist, ConstantDist):
        kind = scalar_kind(dist.value)
        return kind, (str(dist.value),) if kind == "str" else None
    if isinstance(dist, SequenceDist):
        kinds_seen = {scalar_kind(v) for v in dist.values}
        if kinds_seen == {"str"}:
            return "str", tuple(dict.fromkeys(str(v) for v in dist.values))
        return ("float" if "float" in kinds_seen else kinds_seen.pop()), None
    if isinstance(dist, DerivedDist):
        if kinds[dist.from_] not in ("int", "float"):
            raise spec_error(
                f"{path}.from: {dist.from_!r} is {kinds[dist.from_]}, but bins need a number"
            )
        return "str", tuple(dist.bin_labels())
    if isinstance(dist, ConditionalDist):
        return _describe_conditional(dist, path, kinds, values)
    return ("int" if dist.integer else "float"), None


def _describe_conditional(
    dist: ConditionalDist,
    path: str,
    kinds: Mapping[str, Kind],
    values: Mapping[str, tuple[str, ...] | None],
) -> tuple[Kind, tuple[str, ...] | None]:
    _check_case_keys(dist, path, kinds[dist.given], values[dist.given])
    described = [
        _describe(case, f"{path}.cases.{key}", kinds, values) for key, case in dist.cases.items()
    ]
    case_kinds = {kind for kind, _ in described}
    if case_kinds == {"str"}:
        if any(v is None for _, v in described):
            return "str", None
        return "str", tuple(dict.fromkeys(x for _, v in described for x in v or ()))
    if case_kinds <= {"int", "float"}:
        return ("float" if "float" in case_kinds else "int"), None
    if case_kinds == {"bool"}:
        return "bool", None
    raise spec_error(f"{path}.cases: cases mix value types ({_list(sorted(case_kinds))})")


def _check_case_keys(
    dist: ConditionalDist, path: str, parent_kind: Kind, parent_values: tuple[str, ...] | None
) -> None:
    """Case keys must be parent values (typos match nothing) and cover them all."""
    keys = [k for k in dist.cases if k != DEFAULT_CASE]
    if parent_kind == "float":
        raise spec_error(
            f"{path}.given: {dist.given!r} is real-valued; bin it with a derived attribute first"
        )
    for key in keys:
        if parent_values is not None:
            ok = key in parent_values
        elif parent_kind == "bool":
            ok = key in ("true", "false")
        else:
            ok = key.lstrip("-").isdigit() if parent_kind == "int" else True
        if not ok:
            shown = _list(parent_values) if parent_values is not None else parent_kind
            raise spec_error(
                f"{path}.cases.{key}: {key!r} is not a value of {dist.given!r} (values: {shown})"
            )
    if parent_values is not None and DEFAULT_CASE not in dist.cases:
        missing = [v for v in parent_values if v not in dist.cases]
        if missing:
            raise spec_error(
                f"{path}.cases: no case for {dist.given} = {_list(missing)} "
                f"and no '{DEFAULT_CASE}' case"
            )
