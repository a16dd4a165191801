"""Small types shared by the population spec, sampler and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RESERVED_COLUMNS: tuple[str, ...] = ("agent_id", "group")
"""Columns the sampler always writes itself, so attributes may not use these names."""

DEFAULTED_ATTRIBUTES: tuple[str, ...] = ("model", "prompt_variant")
"""Attributes every population table carries; the caller's defaults fill them when absent."""


class PopulationSpecError(ValueError):
    """A population spec cannot be used.

    The message always names the source (file) and the field path, e.g.
    ``census.yaml: attributes.age.std: Input should be greater than 0``, because
    users fix specs by hand and need to know where to look.
    """


@dataclass(frozen=True, slots=True)
class MarginalCheck:
    """Achieved vs target marginal of one attribute (or one conditional case).

    Categorical checks compare proportions: ``max_abs_dev`` is the largest
    absolute gap between achieved and target proportions, ``tvd`` the total
    variation distance, ``chi2``/``dof``/``p_value`` Pearson's goodness of fit.
    Numeric checks compare ``mean`` and ``std``; there ``max_abs_dev`` is the
    mean's gap in units of the target standard deviation, so one tolerance
    works for ages and incomes alike. ``z`` is the largest gap in standard
    errors: a failed check with ``z`` below ~3 is sampling noise (too few
    agents to hit the tolerance), one with a large ``z`` is a real miss.
    """

    attribute: str
    kind: Literal["categorical", "numeric"]
    n: int
    target: dict[str, float]
    achieved: dict[str, float]
    max_abs_dev: float
    passed: bool
    case: str | None = None  # e.g. "education=phd" for one case of a conditional
    chi2: float | None = None
    dof: int | None = None
    p_value: float | None = None
    tvd: float | None = None
    z: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """Attribute name plus the case it is restricted to, for tables and logs."""
        return self.attribute if self.case is None else f"{self.attribute} | {self.case}"
