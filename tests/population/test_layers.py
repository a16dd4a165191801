"""population sits below config (a run config embeds a population spec): it must never
import config, plugins, runtime or anything above them."""

from __future__ import annotations

import ast
from pathlib import Path

POPULATION = Path(__file__).resolve().parents[2] / "src" / "megasim" / "population"
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
    offenders = []
    for path in sorted(POPULATION.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [f"{path.name}: {m}" for m in modules if m.startswith(HIGHER)]
    assert offenders == []
