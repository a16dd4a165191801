"""The runtimes sit below the scenarios: they build agents through the scenario reference
in the config (megasim.plugins), never by importing a scenario, and never import the
layers above them (simulation, run, report, studio, cli)."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "src" / "megasim" / "runtime"
HIGHER = (
    "megasim.scenarios",
    "megasim.simulation",
    "megasim.run",
    "megasim.report",
    "megasim.studio",
    "megasim.cli",
)


def _above(module: str) -> bool:
    return any(module == h or module.startswith(f"{h}.") for h in HIGHER)


def test_runtime_imports_nothing_above_it() -> None:
    offenders = []
    for path in sorted(RUNTIME.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            offenders += [f"{path.name}: {m}" for m in modules if _above(m)]
    assert offenders == []
