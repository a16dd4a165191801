"""Exact, order-independent sums of float64 values, vectorised with numpy.

Shards reduce their agents' values to partial sums that the driver adds up. With
ordinary floating point the total then depends on how agents were split into
shards, and the winning number fed back to agents would differ in its last bits
between a 1-shard and a 4-shard run. Here each value is decomposed exactly as
``mantissa * 2**exponent`` with an integer mantissa; mantissas are summed per
exponent with integer-exact arithmetic, and the result is one Python integer in
units of ``2**-SCALE_BITS``, so adding partials in any order gives the same total.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import numpy.typing as npt

SCALE_BITS = 1100  # 2**-1074 is the smallest double; a little headroom above
_HALF_BITS = 26


def exact_group_sums(
    values: npt.NDArray[np.float64], groups: npt.NDArray[np.integer], n_groups: int
) -> list[int]:
    """Per-group sums of finite ``values``, each as an int in units of 2**-SCALE_BITS."""
    totals = [0] * n_groups
    if values.size == 0:
        return totals
    mantissa, exponent = np.frexp(values)
    whole = (mantissa * float(1 << 53)).astype(np.int64)  # exact: 53-bit mantissa
    high, low = np.divmod(whole, 1 << _HALF_BITS)  # both < 2**27 in magnitude
    exponents, exponent_index = np.unique(exponent, return_inverse=True)
    key = groups.astype(np.int64) * exponents.size + exponent_index.ravel()
    size = n_groups * exponents.size
    # float64 bincount is exact here: |sum| <= 2**27 * 2**26 agents < 2**53
    high_sums = np.bincount(key, weights=high.astype(np.float64), minlength=size)
    low_sums = np.bincount(key, weights=low.astype(np.float64), minlength=size)
    for k in np.flatnonzero((high_sums != 0) | (low_sums != 0)):
        group, e = divmod(int(k), exponents.size)
        units = (int(high_sums[k]) << _HALF_BITS) + int(low_sums[k])
        shift = int(exponents[e]) - 53 + SCALE_BITS
        totals[group] += units << shift if shift >= 0 else units >> -shift
    return totals


def as_fraction(total: int) -> Fraction:
    return Fraction(total, 1 << SCALE_BITS)
