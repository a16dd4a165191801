"""The paper's published numbers (``reference.yaml``) and which study cells they match."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

RATIO_TOLERANCE = 0.005  # the paper wrote 2/3 as 0.667


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: list[str] | None = None
    ratio: float
    offset: float = 0.0


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    model: str
    setting: str
    match: Match
    means: list[float] = Field(min_length=1)
    seconds_per_round: list[float] | None = None
    source: str
    baseline: bool = False

    def matches(self, prompt: str, ratio: float, offset: float) -> bool:
        m = self.match
        if abs(m.ratio - ratio) > RATIO_TOLERANCE or m.offset != offset:
            return False
        return m.prompts is None or prompt in m.prompts


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[Entry]
    scalability: list[dict[str, str]] = Field(default_factory=list)
    differences: list[str] = Field(default_factory=list)


def load_reference() -> Reference:
    text = resources.files("megasim.study").joinpath("reference.yaml").read_text("utf-8")
    data: Any = yaml.safe_load(text)
    return Reference.model_validate(data)
