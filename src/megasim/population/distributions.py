"""One pydantic model per ``dist:`` tag of a population spec.

All models forbid unknown keys so that a typo (``weigths``) is an error rather
than a silently ignored setting.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from megasim.population._stats import normal_mass

WEIGHT_SUM_TOLERANCE = 1e-6
MIN_TRUNCATED_MASS = 1e-3  # below this, rejection sampling would draw > 1000x the agents
DEFAULT_CASE = "default"  # the conditional case used for parent values without their own case

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def spec_error(message: str) -> PydanticCustomError:
    """A validation error whose text is exactly ``message`` (no "Value error," prefix)."""
    return PydanticCustomError("population_spec", "{detail}", {"detail": message})


def key_text(key: object) -> object:
    """YAML turns keys like ``1`` or ``yes`` into numbers/bools; parent values are text."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int | float):
        return str(key)
    return key


def _text_keys(value: object) -> object:
    return {key_text(k): v for k, v in value.items()} if isinstance(value, dict) else value


TextKeys = BeforeValidator(_text_keys)


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Bounded(_Dist):
    """Numeric distribution with optional bounds; out-of-bounds draws are resampled."""

    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    integer: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise spec_error(f"min ({self.min:g}) must be below max ({self.max:g})")
        lo, hi = self.integer_bounds()
        if self.integer and lo > hi:
            raise spec_error(f"no integer lies between min ({self.min:g}) and max ({self.max:g})")
        return self

    def integer_bounds(self) -> tuple[float, float]:
        """Bounds on the sampled values (rounded inwards when ``integer``)."""
        lo = -math.inf if self.min is None else self.min
        hi = math.inf if self.max is None else self.max
        if self.integer:
            lo = lo if math.isinf(lo) else float(math.ceil(lo))
            hi = hi if math.isinf(hi) else float(math.floor(hi))
        return lo, hi

    def draw_bounds(self) -> tuple[float, float]:
        """Bounds for the continuous draw: integers get +-0.5 so every integer is equally wide."""
        lo, hi = self.integer_bounds()
        return (lo - 0.5, hi + 0.5) if self.integer else (lo, hi)


class NormalDist(_Bounded):
    dist: Literal["normal"]
    mean: FiniteFloat
    std: PositiveFloat

    @model_validator(mode="after")
    def _check_mass(self) -> Self:
        mass = normal_mass(self.mean, self.std, *self.draw_bounds())
        if mass < MIN_TRUNCATED_MASS:
            raise spec_error(
                f"min/max keep only {mass:.2e} of the normal's mass; move mean inside the bounds"
            )
        return self


LOG_LIMIT = 300  # exp(300) ~ 1e130: its moments still fit a float


class LognormalDist(_Bounded):
    """exp(N(mean, sigma)): ``mean`` and ``sigma`` are those of the log."""

    dist: Literal["lognormal"]
    mean: FiniteFloat
    sigma: PositiveFloat

    @model_validator(mode="after")
    def _check_mass(self) -> Self:
        if self.min is not None and self.min < 0:
            raise spec_error(f"min ({self.min:g}) must be >= 0 for a lognormal")
        if abs(self.mean) + 6 * self.sigma + self.sigma**2 > LOG_LIMIT:  # exp() overflows
            raise spec_error(
                f"mean ({self.mean:g}) and sigma ({self.sigma:g}) are those of the log: "
                f"|mean| + 6 sigma + sigma^2 must stay <= {LOG_LIMIT}"
            )
        mass = normal_mass(self.mean, self.sigma, *self.log_bounds())
        if mass < MIN_TRUNCATED_MASS:
            raise spec_error(f"min/max keep only {mass:.2e} of the lognormal's mass")
        return self

    def log_bounds(self) -> tuple[float, float]:
        """Draw bounds in log space, where the sampler draws."""
        lo, hi = self.draw_bounds()
        return (math.log(lo) if lo > 0 else -math.inf, math.log(hi) if hi > 0 else -math.inf)


class UniformDist(_Bounded):
    dist: Literal["uniform"]
    min: FiniteFloat
    max: FiniteFloat


class CategoricalDist(_Dist):
    """Named categories with weights; weights must sum to 1 unless ``normalize``."""

    dist: Literal["categorical"]
    normalize: bool = False  # declared before weights so the weights validator can see it
    weights: Annotated[dict[str, PositiveFloat], TextKeys, Field(min_length=1)]

    @field_validator("weights")
    @classmethod
    def _check_sum(cls, weights: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        total = math.fsum(weights.values())
        if not info.data.get("normalize", False) and abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise spec_error(f"weights sum to {total:.6g}, not 1 (fix them or set normalize: true)")
        return weights

    def proportions(self) -> dict[str, float]:
        """Target proportions, normalised."""
        total = math.fsum(self.weights.values())
        return {k: w / total for k, w in self.weights.items()}


Scalar = bool | int | float | str


class ConstantDist(_Dist):
    dist: Literal["constant"]
    value: Scalar


class SequenceDist(_Dist):
    """Agent i gets ``values[i % len(values)]``: deterministic, e.g. for names."""

    dist: Literal["sequence"]
    values: Annotated[list[Scalar], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_homogeneous(self) -> Self:
        kinds = {scalar_kind(v) for v in self.values}
        if len(kinds) > 1 and kinds != {"int", "float"}:
            raise spec_error(f"values mix types ({', '.join(sorted(kinds))})")
        return self


class DerivedDist(_Dist):
    """Bins a numeric attribute: bin i is [bins[i], bins[i+1]); outside all bins -> null."""

    dist: Literal["derived"]
    from_: str = Field(alias="from")
    bins: Annotated[list[FiniteFloat], Field(min_length=2)]
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _check_bins(self) -> Self:
        if any(lo >= hi for lo, hi in itertools.pairwise(self.bins)):
            raise spec_error("bins must be strictly increasing")
        if self.labels is not None:
            if len(self.labels) != len(self.bins) - 1:
                raise spec_error(
                    f"{len(self.labels)} labels for {len(self.bins) - 1} bins "
                    "(need one label fewer than bin edges)"
                )
            if len(set(self.labels)) != len(self.labels):
                raise spec_error("labels must be unique")
        return self

    def bin_labels(self) -> list[str]:
        """Given labels, or "[lo, hi)" when none were given."""
        if self.labels is not None:
            return list(self.labels)
        return [f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(self.bins)]


class ConditionalDist(_Dist):
    """A distribution per value of attribute ``given``; case ``default`` catches the rest."""

    dist: Literal["conditional"]
    given: str
    cases: Annotated[dict[str, Distribution], TextKeys, Field(min_length=1)]


Distribution = Annotated[
    NormalDist
    | LognormalDist
    | UniformDist
    | CategoricalDist
    | ConstantDist
    | SequenceDist
    | DerivedDist
    | ConditionalDist,
    Field(discriminator="dist"),
]
DIST_NAMES: tuple[str, ...] = (
    "normal",
    "lognormal",
    "uniform",
    "categorical",
    "constant",
    "sequence",
    "conditional",
    "derived",
)

ConditionalDist.model_rebuild()

Kind = Literal["str", "int", "float", "bool"]


def scalar_kind(value: object) -> Kind:
    """Column kind of one YAML scalar (bool first: it is an int subclass)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"
