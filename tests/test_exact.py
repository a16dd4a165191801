"""Exact sums: equal to the exact rational sum, and independent of how values are split."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from megasim.exact import as_fraction, exact_group_sums

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@given(st.lists(st.tuples(finite, st.integers(0, 2)), max_size=200), st.integers(0, 200))
def test_exact_and_split_independent(pairs: list[tuple[float, int]], cut: int) -> None:
    values = np.array([v for v, _ in pairs], dtype=np.float64)
    groups = np.array([g for _, g in pairs], dtype=np.int64)
    totals = exact_group_sums(values, groups, 3)
    for g in range(3):
        expected = sum((Fraction(v) for v, k in pairs if k == g), Fraction(0))
        assert as_fraction(totals[g]) == expected
    left = exact_group_sums(values[:cut], groups[:cut], 3)
    right = exact_group_sums(values[cut:], groups[cut:], 3)
    assert [a + b for a, b in zip(left, right, strict=True)] == totals


def test_cancellation_is_exact() -> None:
    """Why this module exists: 1e16 + 1.0 rounds the 1.0 away in float64; exact sums don't."""
    values = np.array([1e16, 1.0, -1e16, 1.0])
    groups = np.zeros(4, dtype=np.int64)
    assert float(as_fraction(exact_group_sums(values, groups, 1)[0])) == 2.0
