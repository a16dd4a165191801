"""The runtimes sit below the scenarios: they build agents through the scenario reference
in the config (megasim.plugins), never by importing a scenario, and never import the
layers above them (simulation, run, report, studio, cli)."""

from __future__ import annotations

from tests.import_rules import SRC, imports_from

HIGHER = (
    "megasim.scenarios",
    "megasim.simulation",
    "megasim.run",
    "megasim.report",
    "megasim.studio",
    "megasim.cli",
)


def test_runtime_imports_nothing_above_it() -> None:
    assert imports_from(SRC / "runtime", HIGHER) == []
