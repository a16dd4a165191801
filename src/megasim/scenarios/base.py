"""Scenario interface: what a run config's ``scenario:`` names, built-in or the user's own.

A scenario is a class found by reference (see ``megasim.plugins``): an entry point of the
``megasim.scenarios`` group (the built-ins are registered that way too), an importable
``package.module:Class``, or ``./file.py:Class`` relative to the config file. It brings:

- ``section`` / ``settings_model``: its own config section, a pydantic model validated
  with the rest of the config (errors name the file and the field, exit 2);
- ``build_env`` / ``build_agents``: its environment and agents (and through them its
  prompts and per-step reductions, ``Environment.reduce`` / ``combine``);
- ``run``: its plain async loop over ``await sim.step()``;
- ``headline`` and ``report``: what ``megasim run`` shows per step and the tables and
  plots ``megasim report`` adds to the generic ones.

Nothing in megasim branches on a scenario's name: the CLI, the report and both
runtimes only call these members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pyarrow as pa
from pydantic import BaseModel

from megasim.agent import Agent
from megasim.env.base import Environment
from megasim.model.base import ModelClient

if TYPE_CHECKING:
    from rich.console import Console

    from megasim.config import SimulationConfig
    from megasim.simulation import Simulation

SettingsT = TypeVar("SettingsT", bound=BaseModel)


@dataclass(slots=True, frozen=True)
class ValueScale:
    """How a scenario's decision values are read: their range and name, and (``scored``)
    a winning number ``ratio * mean + offset`` per round, as in the guessing game."""

    ratio: float = 2 / 3
    offset: float = 0.0
    low: float = 0.0
    high: float = 100.0
    scored: bool = True
    label: str = "Guesses"

    def winner(self, mean: float | None) -> float | None:
        """Winning number ``ratio * mean + offset``; None when nobody answered validly."""
        if mean is None or not self.scored:
            return None
        return self.ratio * mean + self.offset


class Scenario:
    """Base class of every scenario; subclass it and override what your world needs.

    Instances are made with no arguments, once per process that needs one (the driver,
    each Ray shard actor, the report), so keep per-run data in the config, not here.
    """

    name: ClassVar[str] = "scenario"
    section: ClassVar[str | None] = None
    """The run config's key for this scenario's settings (``game:`` for the guessing game);
    None: the scenario has no settings of its own."""
    settings_model: ClassVar[type[BaseModel] | None] = None
    """The pydantic model of that section; use ``extra="forbid"`` so typos are errors."""
    headline: ClassVar[tuple[str, str] | None] = None
    """(outcome key, column title): the per-step number ``megasim run`` prints, taken from
    ``Environment.combine``'s outcome (the game's ``winner``); None: no such column."""
    keyed_state: ClassVar[bool] = False
    """True when its environment keeps keyed state (then ``runtime.env_partitions`` applies)."""

    def build_env(self, config: SimulationConfig, population: pa.Table) -> Environment:
        """The driver's environment (and each shard's replica) for the whole population."""
        raise NotImplementedError

    def build_agents(
        self, config: SimulationConfig, population: pa.Table, models: Mapping[str, ModelClient]
    ) -> list[Agent]:
        """Agents for the rows of ``population`` (one shard's slice)."""
        raise NotImplementedError

    def check_population(self, population: pa.Table) -> list[str]:
        """Human-readable problems that make the population unusable for this scenario."""
        return []

    async def run(self, sim: Simulation) -> None:
        """The central orchestration: ordinary async code calling ``await sim.step()``.
        By default: step until ``rounds`` (a resumed run continues where it was)."""
        await sim.step_until(sim.config.rounds)

    def value_scale(self, settings: Any) -> ValueScale:
        """How ``megasim report`` reads decision values (range, name, winning number)."""
        return ValueScale(scored=False, label="Values")

    def report(self, run_dir: Path, out_dir: Path, console: Console) -> list[Path]:
        """Print this scenario's own tables and write its plots into ``out_dir``; return the
        files written. Called by ``megasim report`` after the generic tables (rounds, models,
        cost, breakdowns); ``read_settings(run_dir)`` gives the run's settings."""
        return []

    # --- helpers for subclasses ---------------------------------------------------------
    @classmethod
    def settings(cls, config: SimulationConfig) -> Any:
        """This scenario's validated settings in ``config`` (None without a section)."""
        return config.scenario_settings

    @classmethod
    def read_settings(cls, run_dir: Path) -> Any:
        """The settings a finished run was played with, from its stored config.yaml."""
        from megasim.config import load_stored_config

        return cls.settings(load_stored_config(Path(run_dir) / "config.yaml"))


def settings_of(config: SimulationConfig, model: type[SettingsT]) -> SettingsT:
    """``config``'s scenario settings as ``model`` (a TypeError if the run's scenario has
    other settings): typed access for scenario code and tools built for one scenario."""
    settings = config.scenario_settings
    if not isinstance(settings, model):
        raise TypeError(
            f"scenario {config.scenario!r} has settings {type(settings).__name__}, "
            f"not {model.__name__}"
        )
    return settings
