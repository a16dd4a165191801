"""Scenario interface: how to build a run's environment and agents, and its plain-code loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from megasim.agent import Agent
from megasim.env.base import Environment
from megasim.model.base import ModelClient

if TYPE_CHECKING:
    from megasim.config import SimulationConfig
    from megasim.simulation import Simulation


class Scenario(Protocol):
    name: str

    def build_env(self, config: SimulationConfig, population: pa.Table) -> Environment:
        """The driver's environment (and each shard's replica) for the whole population."""
        ...

    def build_agents(
        self, config: SimulationConfig, population: pa.Table, models: Mapping[str, ModelClient]
    ) -> list[Agent]:
        """Agents for the rows of ``population`` (one shard's slice)."""
        ...

    def check_population(self, population: pa.Table) -> list[str]:
        """Human-readable problems that make the population unusable for this scenario."""
        ...

    async def run(self, sim: Simulation) -> None:
        """The central orchestration: ordinary async code calling ``await sim.step()``."""
        ...
