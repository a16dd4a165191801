"""Achieved vs target marginals of a sampled population.

A run reports these so it can show it got the population it asked for, and a
reviewer can see by how much (and whether beyond sampling noise) it missed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from megasim.population._stats import chi2_sf, truncated_normal_moments
from megasim.population.base import MarginalCheck
from megasim.population.distributions import (
    DEFAULT_CASE,
    CategoricalDist,
    ConditionalDist,
    Distribution,
    LognormalDist,
    NormalDist,
    UniformDist,
)
from megasim.population.spec import PopulationSpec

Mask = npt.NDArray[np.bool_]


def target_moments(dist: NormalDist | LognormalDist | UniformDist) -> tuple[float, float]:
    """Theoretical mean and std of what the sampler draws (truncation and rounding included)."""
    if isinstance(dist, UniformDist):
        lo, hi = dist.integer_bounds()
        if dist.integer:
            return (lo + hi) / 2, math.sqrt(((hi - lo + 1) ** 2 - 1) / 12)
        return (lo + hi) / 2, (hi - lo) / math.sqrt(12)
    if isinstance(dist, NormalDist):
        lo, hi = dist.draw_bounds()
        if math.isinf(lo) and math.isinf(hi) and not dist.integer:
            return dist.mean, dist.std
        return truncated_normal_moments(dist.mean, dist.std, lo, hi, integer=dist.integer)
    lo, hi = dist.log_bounds()
    if math.isinf(lo) and math.isinf(hi) and not dist.integer:
        s2 = dist.sigma**2
        mean = math.exp(dist.mean + s2 / 2)
        return mean, mean * math.sqrt(math.expm1(s2))
    return truncated_normal_moments(dist.mean, dist.sigma, lo, hi, integer=dist.integer, log=True)


class _Columns:
    """Decodes each table column once: text as (codes, categories), numbers as numpy."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table
        self._cache: dict[str, Any] = {}

    def text(self, name: str) -> tuple[npt.NDArray[np.int64], list[str]]:
        if name not in self._cache:
            column = self._table.column(name)
            if not pa.types.is_dictionary(column.type):
                column = pa.chunked_array([pc.dictionary_encode(column.combine_chunks())])
            column = column.unify_dictionaries()  # chunks may carry different dictionaries
            chunks = column.chunks or [pa.DictionaryArray.from_arrays([], pa.array([], "string"))]
            indices = pa.concat_arrays([c.indices.cast(pa.int64()) for c in chunks])
            codes = indices.fill_null(-1).to_numpy(zero_copy_only=False)
            categories = [str(c) for c in chunks[0].dictionary.to_pylist()]
            self._cache[name] = (codes, categories)
        return self._cache[name]  # type: ignore[no-any-return]

    def numbers(self, name: str) -> npt.NDArray[Any]:
        if name not in self._cache:
            column = self._table.column(name).combine_chunks()
            self._cache[name] = column.to_numpy(zero_copy_only=False)
        return self._cache[name]  # type: ignore[no-any-return]

    def is_text(self, name: str) -> bool:
        kind = self._table.schema.field(name).type
        return bool(pa.types.is_dictionary(kind) or pa.types.is_string(kind))

    def equals(self, name: str, key: str) -> Mask:
        """Rows where column ``name`` has the value a conditional case key denotes."""
        if self.is_text(name):
            codes, categories = self.text(name)
            return np.isin(codes, [i for i, c in enumerate(categories) if c == key])
        values = self.numbers(name)
        if values.dtype == np.bool_:
            return values == (key == "true")  # type: ignore[no-any-return]
        return values == int(key)  # type: ignore[no-any-return]


def check_marginals(
    table: pa.Table, spec: PopulationSpec, tolerance: float = 0.02
) -> list[MarginalCheck]:
    """One check per categorical/numeric attribute, and per case of each conditional.

    Categorical checks pass when every proportion is within ``tolerance`` of its
    target; numeric ones when the mean is within ``tolerance`` target standard
    deviations of the theoretical (truncated) mean.
    """
    missing = [name for name in spec.attributes if name not in table.column_names]
    if missing:
        raise ValueError(f"table lacks attribute columns: {', '.join(missing)}")
    columns = _Columns(table)
    everyone = np.ones(table.num_rows, dtype=np.bool_)
    checks: list[MarginalCheck] = []
    for name, dist in spec.attributes.items():
        _check(name, dist, columns, everyone, None, tolerance, checks)
    return checks


def _check(
    name: str,
    dist: Distribution,
    columns: _Columns,
    mask: Mask,
    case: str | None,
    tolerance: float,
    out: list[MarginalCheck],
) -> None:
    if isinstance(dist, CategoricalDist):
        out.append(_categorical(name, dist, columns, mask, case, tolerance))
    elif isinstance(dist, NormalDist | LognormalDist | UniformDist):
        out.append(_numeric(name, dist, columns, mask, case, tolerance))
    elif isinstance(dist, ConditionalDist):
        matched = np.zeros_like(mask)
        for key in [k for k in dist.cases if k != DEFAULT_CASE]:
            sub = columns.equals(dist.given, key)
            matched |= sub
            label = f"{dist.given}={key}" if case is None else f"{case}, {dist.given}={key}"
            _check(name, dist.cases[key], columns, mask & sub, label, tolerance, out)
        if DEFAULT_CASE in dist.cases:
            label = f"{dist.given}=<other>" if case is None else f"{case}, {dist.given}=<other>"
            rest = mask & ~matched
            _check(name, dist.cases[DEFAULT_CASE], columns, rest, label, tolerance, out)


def _categorical(
    name: str,
    dist: CategoricalDist,
    columns: _Columns,
    mask: Mask,
    case: str | None,
    tolerance: float,
) -> MarginalCheck:
    codes, categories = columns.text(name)
    selected = codes[mask]
    n = len(selected)
    bincount = np.bincount(selected[selected >= 0], minlength=len(categories))
    observed: dict[str, int] = dict.fromkeys(dist.weights, 0)
    for category, count in zip(categories, bincount.tolist(), strict=True):
        if count or category in observed:
            observed[category] = observed.get(category, 0) + count
    target = {c: dist.proportions().get(c, 0.0) for c in observed}
    if n == 0:
        return MarginalCheck(name, "categorical", 0, target, {}, 0.0, True, case, notes=("empty",))
    achieved = {c: observed[c] / n for c in observed}
    gaps = [abs(achieved[c] - target[c]) for c in observed]
    chi2 = 0.0
    for c, count in observed.items():
        expected = n * target[c]
        chi2 += (count - expected) ** 2 / expected if expected > 0 else (math.inf if count else 0)
    dof = len(dist.weights) - 1
    z = max(
        (abs(achieved[c] - p) / math.sqrt(p * (1 - p) / n) for c, p in target.items() if 0 < p < 1),
        default=0.0,
    )
    notes = (f"{int((selected < 0).sum())} null",) if (selected < 0).any() else ()
    return MarginalCheck(
        attribute=name,
        kind="categorical",
        n=n,
        target=target,
        achieved=achieved,
        max_abs_dev=max(gaps),
        passed=max(gaps) <= tolerance,
        case=case,
        chi2=chi2,
        dof=dof,
        p_value=chi2_sf(chi2, dof) if dof > 0 else None,
        tvd=0.5 * sum(gaps),
        z=z,
        notes=notes,
    )


def _numeric(
    name: str,
    dist: NormalDist | LognormalDist | UniformDist,
    columns: _Columns,
    mask: Mask,
    case: str | None,
    tolerance: float,
) -> MarginalCheck:
    values = columns.numbers(name)[mask].astype(np.float64)
    mean, std = target_moments(dist)
    target = {"mean": mean, "std": std}
    truncated = dist.min is not None or dist.max is not None
    if truncated and not isinstance(dist, UniformDist):
        notes: tuple[str, ...] = ("target includes truncation",)
    else:
        notes = ()
    if len(values) == 0:
        return MarginalCheck(name, "numeric", 0, target, {}, 0.0, True, case, notes=("empty",))
    achieved = {"mean": float(values.mean()), "std": float(values.std())}
    gap = abs(achieved["mean"] - mean)
    deviation = gap / std if std > 0 else gap
    return MarginalCheck(
        attribute=name,
        kind="numeric",
        n=len(values),
        target=target,
        achieved=achieved,
        max_abs_dev=deviation,
        passed=deviation <= tolerance,
        case=case,
        z=deviation * math.sqrt(len(values)) if std > 0 else None,
        notes=notes,
    )


def _number(value: float) -> str:
    """A mean or std at a precision that suits its size (incomes, ages, rates)."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _moments(values: dict[str, float]) -> str:
    if not values:
        return "-"
    return f"{_number(values['mean'])} ± {_number(values['std'])}"


def _result(check: MarginalCheck) -> str:
    return "[green]pass[/green]" if check.passed else "[bold red]FAIL[/bold red]"


def _table(title: str) -> Table:
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title_justify="left",
        title_style="bold",
        collapse_padding=True,
    )


def _text_column(table: Table, header: str) -> None:
    table.add_column(header, overflow="fold")


def _number_column(table: Table, header: str) -> None:
    table.add_column(header, justify="right", no_wrap=True)


def _grouped(checks: Sequence[MarginalCheck]) -> list[tuple[str, MarginalCheck | None]]:
    """Row labels: a conditional's cases indented under one "attribute | given=" row."""
    rows: list[tuple[str, MarginalCheck | None]] = []
    header = None
    for check in checks:
        if check.case is None:
            header = None
            rows.append((check.attribute, check))
            continue
        given, _, value = check.case.partition("=")
        if header != (check.attribute, given):
            header = (check.attribute, given)
            rows.append((f"{check.attribute} | {given}=", None))
        rows.append((f"  {value}", check))
    return rows


def _categorical_table(checks: Sequence[MarginalCheck]) -> Table:
    """One row per (attribute [case], category value); a blank line between blocks."""
    table = _table("Population marginals (proportions)")
    _text_column(table, "attribute")
    _text_column(table, "value")
    for header in ("target", "achieved", "deviation"):
        _number_column(table, header)
    for check in checks:
        values = list(check.target)
        # a conditional's case goes on its block's second line, so the column stays narrow
        if check.case is None:
            label = [check.attribute]
        else:
            given, _, case = check.case.partition("=")
            label = [f"{check.attribute} | {given}=", f"  {case}"]
        if len(values) < len(label):
            label = ["\n".join(label)]
        for i, value in enumerate(values):
            target = check.target[value]
            achieved = check.achieved.get(value)
            if achieved is None:
                shown, deviation = "-", "-"
            else:
                gap = achieved - target
                shown, deviation = f"{achieved:.4f}", f"{gap:+.4f}"
                if not check.passed and math.isclose(abs(gap), check.max_abs_dev):
                    deviation = f"[bold red]{deviation}[/bold red]"
            table.add_row(
                Text(label[i] if i < len(label) else ""),
                Text(value),
                f"{target:.4f}",
                shown,
                deviation,
                end_section=i == len(values) - 1,
            )
    return table


def _numeric_table(checks: Sequence[MarginalCheck]) -> Table:
    """One row per numeric attribute [case]: target vs achieved mean ± std."""
    table = _table("Population marginals (numeric, mean ± std)")
    _text_column(table, "attribute")
    for header in ("target", "achieved", "dev (std)"):
        _number_column(table, header)
    for label, row in _grouped(checks):
        if row is None:
            table.add_row(Text(label))
            continue
        target, achieved = row.target, row.achieved
        if achieved and target["std"] > 0:
            deviation = f"{(achieved['mean'] - target['mean']) / target['std']:+.3f}"
        elif achieved:
            deviation = f"{achieved['mean'] - target['mean']:+.3f}"
        else:
            deviation = "-"
        table.add_row(Text(label), _moments(target), _moments(achieved), deviation)
    return table


def _tests_table(checks: Sequence[MarginalCheck]) -> Table:
    """One row per check: sample size, goodness of fit, largest gap and verdict."""
    table = _table("Marginal tests")
    table.caption = (
        "max dev: largest proportion gap, or mean gap in target stds for numeric "
        "attributes; z: that gap in standard errors (below ~3 is sampling noise)"
    )
    table.caption_justify = "left"
    _text_column(table, "attribute")
    for header in ("n", "chi2 (dof)", "p", "max dev", "z"):
        _number_column(table, header)
    table.add_column("result", no_wrap=True)
    for label, check in _grouped(checks):
        if check is None:
            table.add_row(Text(label))
            continue
        if check.chi2 is None:
            chi2 = ""
        elif math.isinf(check.chi2):
            chi2 = f"inf ({check.dof})"
        else:
            chi2 = f"{check.chi2:.1f} ({check.dof})"
        if check.p_value is None:
            p_value = ""
        elif check.p_value < 0.001:
            p_value = "<0.001"
        else:
            p_value = f"{check.p_value:.3f}"
        table.add_row(
            Text(label),
            f"{check.n:,}",
            chi2,
            p_value,
            f"{check.max_abs_dev:.4f}",
            "" if check.z is None else f"{check.z:.1f}",
            _result(check),
        )
    return table


def _print(console: Console, table: Table) -> None:
    """Print ``table``; where its unwrapped numbers do not fit, fold them rather than cut them.

    Rich measures a cell by its longest word even in a ``no_wrap`` column, so the
    only reliable test of "does it fit" is to render it and look for its ellipsis.
    """
    lines = console.render_lines(table, console.options, pad=False)
    if any("…" in segment.text for line in lines for segment in line):
        for column in table.columns:
            column.no_wrap = False
            column.overflow = "fold"
    console.print(table)


def render_checks(checks: Sequence[MarginalCheck], console: Console) -> None:
    """Print the checks as compact tables that stay readable in 80 columns.

    Categorical checks get one row per category value, numeric ones one row
    each (mean ± std); a tests table then gives each check's statistics and
    verdict, and a last line the pass count. Text cells fold, never truncate.
    """
    categorical = [c for c in checks if c.kind == "categorical"]
    numeric = [c for c in checks if c.kind == "numeric"]
    if categorical:
        _print(console, _categorical_table(categorical))
    if numeric:
        _print(console, _numeric_table(numeric))
    if checks:
        _print(console, _tests_table(checks))
    notes = [(c.label, note) for c in checks for note in c.notes]
    for label, note in notes:
        console.print(f"[dim]note: {escape(label)}: {escape(note)}[/dim]", overflow="fold")
    passed = sum(c.passed for c in checks)
    console.print(f"{passed}/{len(checks)} marginal checks passed")
