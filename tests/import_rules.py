"""What a source file imports, read from its syntax tree: the layer tests' one helper."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "megasim"


def imported_modules(path: Path) -> set[str]:
    """Every module named by an ``import`` or ``from ... import`` in ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def imports_from(folder: Path, higher: Iterable[str]) -> list[str]:
    """``file: module`` for each import in ``folder/*.py`` of a module in ``higher`` (or
    below one of them: ``megasim.run`` matches ``megasim.run.x``, not ``megasim.runtime``)."""
    tops = tuple(higher)
    return [
        f"{path.name}: {module}"
        for path in sorted(folder.glob("*.py"))
        for module in sorted(imported_modules(path))
        if any(module == top or module.startswith(f"{top}.") for top in tops)
    ]
