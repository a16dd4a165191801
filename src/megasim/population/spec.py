"""Population spec: which persona attributes agents get and how they are distributed.

A spec is YAML validated by pydantic. Every error is reported as
``<file>: <field path>: <message>`` because specs are written by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from megasim.population._graph import analyse, topological_order
from megasim.population.base import PopulationSpecError
from megasim.population.distributions import (
    DIST_NAMES,
    Distribution,
    Kind,
    TextKeys,
    spec_error,
)
from megasim.population.yaml_input import dotted, field_path, read_yaml_file

MAX_SIZE = 1_000_000_000  # agents; far above what one run holds, below numpy's limits


class PopulationSpec(BaseModel):
    """A whole population: size, sampling mode, grouping and attributes.

    ``sampling: exact`` makes categorical counts equal the largest-remainder
    rounding of ``weights * size`` (within each parent case for conditionals);
    numeric attributes are random in both modes. ``groups`` is either a group
    count (agents dealt round-robin after a shuffle) or an attribute name (one
    group per value, in declared order).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=1, le=MAX_SIZE)
    description: str = ""
    sampling: Literal["random", "exact"] = "random"
    groups: int | str = 1
    attributes: Annotated[dict[str, Distribution], TextKeys] = Field(default_factory=dict)

    @field_validator("groups")
    @classmethod
    def _check_groups(cls, groups: int | str) -> int | str:
        if isinstance(groups, int) and groups < 1:
            raise spec_error(f"must be >= 1 or an attribute name, got {groups}")
        return groups

    @model_validator(mode="after")
    def _check_graph(self) -> Self:
        analyse(self.attributes, self.groups)
        return self

    def sampling_order(self) -> list[str]:
        """Attribute names ordered so that parents are sampled before their children."""
        return topological_order(self.attributes)

    def kinds(self) -> dict[str, Kind]:
        """Column kind ("str", "int", "float", "bool") of every attribute."""
        return analyse(self.attributes, self.groups)


def format_validation_error(error: ValidationError, data: object, source: str) -> str:
    """One ``<source>: <field path>: <message>`` line per pydantic error."""
    lines = []
    for err in error.errors(include_url=False):
        path = field_path(err["loc"], data, ("dist",))
        message = err["msg"]
        if err["type"] == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            message = f"unknown distribution {tag!r}; allowed: {', '.join(DIST_NAMES)}"
            path.append("dist")
        elif err["type"] == "union_tag_not_found":
            message = f"missing 'dist'; allowed: {', '.join(DIST_NAMES)}"
        elif err["type"] == "extra_forbidden":
            message = "unknown key (typo?)"
        field = dotted(path)
        lines.append(f"{source}: {field}: {message}" if field else f"{source}: {message}")
    return "\n".join(lines)


def parse_population_spec(data: Mapping[str, Any], source: str = "<spec>") -> PopulationSpec:
    """Validate already-parsed data (e.g. a ``population:`` block of a run config)."""
    if not isinstance(data, Mapping):
        raise PopulationSpecError(f"{source}: a population spec must be a mapping")
    try:
        return PopulationSpec.model_validate(data)
    except ValidationError as exc:
        raise PopulationSpecError(format_validation_error(exc, data, source)) from None


def load_population_spec(path: Path) -> PopulationSpec:
    """Read and validate a YAML population spec; all problems raise PopulationSpecError."""
    path = Path(path)
    data = read_yaml_file(path, PopulationSpecError)
    if data is None:
        raise PopulationSpecError(f"{path}: the file is empty")
    return parse_population_spec(data, str(path))
