"""Scenarios: the built-ins, and how a config's ``scenario:`` reference becomes one."""

from __future__ import annotations

from megasim.plugins import make_scenario
from megasim.scenarios.base import Scenario


def get_scenario(reference: str) -> Scenario:
    """The scenario a run config names: a registered name, ``module:Class`` or
    ``path/file.py:Class`` (see megasim.plugins); a ScenarioLoadError if none."""
    return make_scenario(reference)
