"""The ``segregation:`` section of a run config (Schelling's model with LLM agents)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_DENSITY = 0.5


class SegregationSettings(BaseModel):
    """Grid, neighbourhood, groups and what agents are told about their own tolerance."""

    model_config = ConfigDict(extra="forbid")

    width: int | None = Field(None, ge=1, le=100_000, description="cells across; with height")
    height: int | None = Field(None, ge=1, le=100_000, description="cells down; with width")
    density: float | None = Field(
        None,
        gt=0,
        le=1,
        description="agents per cell; without width/height the grid is the square this "
        f"gives ({DEFAULT_DENSITY} if nothing is set)",
    )
    torus: bool = Field(True, description="edges wrap around (no border cells)")
    neighbourhood: Literal["moore", "von_neumann"] = "moore"
    radius: int = Field(1, ge=1, le=5)
    attribute: str = Field("group", min_length=1, description="population column of the groups")
    threshold: float = Field(
        0.375, ge=0, le=1, description="share of same-group neighbours that keeps an agent content"
    )
    tolerance: str | None = Field(
        None, description="what agents are told about their wishes; default: from threshold"
    )
    offers: int = Field(3, ge=1, le=8, description="empty cells offered to each agent per step")
    block: int = Field(10, ge=1, le=10_000, description="tile side of the dissimilarity index")
    max_tokens: int = Field(48, ge=8, le=4096)

    @model_validator(mode="after")
    def _size_given_once(self) -> SegregationSettings:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither (then density sets them)")
        if self.width is not None and self.density is not None:
            raise ValueError("give either width and height, or density, not both")
        return self

    def grid_size(self, agents: int) -> tuple[int, int]:
        """(width, height) for ``agents`` agents; a square from the density if unset."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        density = self.density if self.density is not None else DEFAULT_DENSITY
        side = max(2 * self.radius + 1, math.ceil(math.sqrt(max(agents, 1) / density)))
        return side, side

    def tolerance_text(self) -> str:
        if self.tolerance is not None:
            return self.tolerance
        return (
            f"You feel at home when at least {self.threshold:.0%} of your neighbours belong "
            "to your own group; fewer than that and you would rather live elsewhere."
        )
