"""What every studio request shares: the runs folder, caches, and how to reach them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from megasim.explore.agents import AgentIndexCache
from megasim.studio.analysis import RunAnalysis
from megasim.studio.catalog import RunCatalog


@dataclass
class Studio:
    root: Path
    catalog: RunCatalog = field(init=False)
    indexes: AgentIndexCache = field(default_factory=AgentIndexCache)
    analysis: RunAnalysis = field(default_factory=RunAnalysis)
    live_interval_s: float = 1.0

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.catalog = RunCatalog(self.root)


def studio_of(request: Request) -> Studio:
    """FastAPI dependency: the app's Studio."""
    studio: Studio = request.app.state.studio
    return studio
