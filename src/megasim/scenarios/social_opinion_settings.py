"""The ``social:`` section of a run config for ``scenario: social_opinion``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Recommender = Literal["following", "popular", "random", "similar"]


class GraphSettings(BaseModel):
    """Where the follow graph comes from: a generator (seeded by the run seed) or a file."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["scale_free", "small_world", "block_model", "edge_list"] = "scale_free"
    degree: int = Field(
        10, ge=1, le=1000, description="scale_free: follows per agent; others: mean ties"
    )
    rewire: float = Field(0.1, ge=0.0, le=1.0, description="small_world: rewiring chance")
    homophily: float = Field(
        0.8, ge=0.0, le=1.0, description="block_model: share of ties inside the own block"
    )
    attribute: str = Field("group", description="block_model: population column of blocks")
    mutual: bool = Field(False, description="scale_free / edge_list: follows go both ways")
    path: Path | None = Field(None, description="edge_list: CSV or Parquet (source, target)")

    @model_validator(mode="after")
    def _path_for_edge_lists(self) -> GraphSettings:
        if (self.kind == "edge_list") != (self.path is not None):
            raise ValueError("path is required for kind edge_list and only for it")
        return self


class Intervention(BaseModel):
    """At ``step``: a ``broadcast`` (a post from ``account`` at the top of every feed),
    a ``remove``d account (it stops acting, its posts vanish), or a new ``recommender``."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=1)
    kind: Literal["broadcast", "remove", "recommender"]
    account: int | None = None
    text: str = ""
    stance: float = Field(50.0, ge=0.0, le=100.0)
    recommender: Recommender | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Intervention:
        if self.kind in ("broadcast", "remove") and self.account is None:
            raise ValueError(f"a {self.kind} intervention needs account")
        if self.kind == "broadcast" and not self.text.strip():
            raise ValueError("a broadcast intervention needs text")
        if self.kind == "recommender" and self.recommender is None:
            raise ValueError("a recommender intervention needs recommender")
        return self


class SocialSettings(BaseModel):
    """Topic, graph, feeds and scheduled interventions of the social network."""

    model_config = ConfigDict(extra="forbid")

    topic: str = "Social media does more good than harm."
    graph: GraphSettings = Field(default_factory=GraphSettings)
    recommender: Recommender = "following"
    feed_size: int = Field(10, ge=1, le=100)
    interventions: list[Intervention] = Field(default_factory=list)
    max_tokens: int = Field(128, ge=16, le=4096)
    pool_size: int = Field(64, ge=1, le=10_000, description="posts kept per pool bucket")
    pool_buckets: int = Field(16, ge=1, le=1024)
