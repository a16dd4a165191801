"""Marginal checks as compact terminal tables (rich), readable in 80 columns.

Kept apart from the checks themselves (``checks.py``): computing a check needs numpy and
pyarrow, showing one only rich, and a run records checks without ever printing them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from megasim.population.base import MarginalCheck


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
