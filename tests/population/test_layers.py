"""population sits below config (a run config embeds a population spec): it must never
import config, plugins, runtime or anything above them."""

from __future__ import annotations

from tests.import_rules import SRC, imports_from

HIGHER = (
    "megasim.config",
    "megasim.plugins",
    "megasim.runtime",
    "megasim.scenarios",
    "megasim.simulation",
    "megasim.run",
    "megasim.cli",
)


def test_population_imports_nothing_above_it() -> None:
    assert imports_from(SRC / "population", HIGHER) == []
