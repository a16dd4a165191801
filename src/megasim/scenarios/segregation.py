"""Scenario ``segregation``: Schelling's model, with LLM residents deciding to stay or move.

Residents (personas; their group is a population column, ``segregation.attribute``)
live on a grid or torus (env/grid.py). Each step every resident is told, in numbers,
who lives around it and a few seeded empty places it could move to, and answers
``stay`` or the letter of a place. Moves are applied together at the step boundary
(conflicts by a seeded rule, losers stay). Per step: moves, lost conflicts, residents
below their threshold (``unhappy``), the mean share of same-group neighbours and the
dissimilarity index. ``megasim report`` prints them and draws the grid before the first
and after the last step. The environment is a small tree (segregation_town.py) to show
composition: a grid child and one child per group, each with its own listeners.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from megasim.agent import Agent, PersonaTable
from megasim.env.grid import GridWorld, random_placement
from megasim.env.grid_geometry import Geometry
from megasim.model.base import ModelClient
from megasim.model.stand_in import register_stand_in
from megasim.scenarios.base import Scenario
from megasim.scenarios.segregation_agent import Resident, ResidentBook
from megasim.scenarios.segregation_settings import SegregationSettings
from megasim.scenarios.segregation_stand_in import segregation_choice
from megasim.scenarios.segregation_town import Town

if TYPE_CHECKING:
    from rich.console import Console

    from megasim.config import SimulationConfig

MAX_GROUPS = 26
register_stand_in("segregation", segregation_choice)  # the surrogate's Schelling rule


def group_codes(population: pa.Table, attribute: str) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Small integer codes per row for the values of ``attribute`` (labels sorted as text)."""
    if attribute not in population.column_names:
        raise ValueError(
            f"segregation.attribute: the population has no column {attribute!r} "
            f"(columns: {', '.join(population.column_names)})"
        )
    column = pc.cast(population.column(attribute), pa.string())
    if column.null_count:
        raise ValueError(f"segregation.attribute: column {attribute!r} has empty values")
    labels = sorted(str(v) for v in pc.unique(column).to_pylist())
    if len(labels) > MAX_GROUPS:
        raise ValueError(
            f"segregation.attribute: column {attribute!r} has {len(labels)} values; "
            f"at most {MAX_GROUPS} groups fit in a prompt"
        )
    codes = pc.index_in(column, value_set=pa.array(labels, pa.string()))
    return codes.to_numpy(zero_copy_only=False).astype(np.int16), labels


class Segregation(Scenario):
    """``scenario: segregation`` with a ``segregation:`` section (SegregationSettings)."""

    name: ClassVar[str] = "segregation"
    section: ClassVar[str | None] = "segregation"
    settings_model: ClassVar[type[SegregationSettings]] = SegregationSettings
    headline: ClassVar[tuple[str, str] | None] = ("same_share", "same-group")

    def options(self, config: SimulationConfig) -> SegregationSettings:
        settings = self.settings(config)
        if settings is None:
            return SegregationSettings()
        if not isinstance(settings, SegregationSettings):
            raise TypeError(f"segregation needs SegregationSettings, not {type(settings)}")
        return settings

    def build_env(self, config: SimulationConfig, population: pa.Table) -> Town:
        settings = self.options(config)
        codes, labels = group_codes(population, settings.attribute)
        width, height = settings.grid_size(population.num_rows)
        geometry = Geometry(width, height, settings.torus, settings.neighbourhood, settings.radius)
        if population.num_rows > geometry.cells:
            raise ValueError(
                f"segregation: {population.num_rows} agents do not fit on a {width}x{height} "
                "grid; make it larger or lower density"
            )
        grid = GridWorld(
            geometry,
            population.column("agent_id").to_numpy().astype(np.int64),
            codes,
            labels,
            random_placement(geometry.cells, population.num_rows, config.seed),
            seed=config.seed,
            offers=settings.offers,
            block=settings.block,
            threshold=settings.threshold,
        )
        return Town(grid)

    def build_agents(
        self, config: SimulationConfig, population: pa.Table, models: Mapping[str, ModelClient]
    ) -> list[Agent]:
        settings = self.options(config)
        book = ResidentBook(
            config.seed,
            config.rounds,
            settings.tolerance_text(),
            settings.threshold,
            settings.max_tokens,
        )
        personas = PersonaTable(population)
        ids = population.column("agent_id").to_pylist()
        groups = population.column("group").to_pylist()
        names = population.column("model").to_pylist()
        return [
            Resident(agent_id, row, personas, models[name], group, book)
            for row, (agent_id, group, name) in enumerate(zip(ids, groups, names, strict=True))
        ]

    def report(self, run_dir: Path, out_dir: Path, console: Console) -> list[Path]:
        from megasim.scenarios.segregation_report import write_report

        return write_report(self, run_dir, out_dir, console)
