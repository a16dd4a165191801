"""Checks of one numeric population column (a starting opinion, an activity probability):
shared by the scenarios and the run so that every such column is refused the same way."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def numeric_column_problems(table: pa.Table, column: str, low: float, high: float) -> list[str]:
    """Why ``column`` cannot hold numbers in [low, high] (empty values allowed); [] if it can."""
    values = table.column(column)
    if not pa.types.is_integer(values.type) and not pa.types.is_floating(values.type):
        return [f"column {column!r} must be numeric ({low:g}-{high:g}), not {values.type}"]
    given = pc.drop_null(values)
    outside = pc.sum(pc.or_(pc.less(given, low), pc.greater(given, high))).as_py()
    return [f"column {column!r}: {outside} values outside [{low:g}, {high:g}]"] if outside else []
