"""Finding a scenario class from the reference a run config gives in ``scenario:``.

Three forms, one mechanism for built-ins and users' own worlds:

- ``guess_two_thirds``: a name registered in the ``megasim.scenarios`` entry-point group
  (megasim registers its built-ins there; an installed plugin package adds its own);
- ``my_package.my_module:MyScenario``: any importable module;
- ``./my_scenario.py:MyScenario``: a Python file; a relative path is relative to the
  config file (``megasim.config`` makes it absolute before the run starts, so Ray actors
  and later resumes find the same file).

This module imports no scenario itself, so that the config layer can validate a
scenario's own settings section without depending on the scenarios it may name.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from megasim.scenarios.base import Scenario

ENTRY_POINT_GROUP = "megasim.scenarios"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class ScenarioLoadError(Exception):
    """The reference names no usable scenario; the message says why and what is known."""


def registered_scenarios() -> dict[str, str]:
    """Names of the entry-point group -> their ``module:Class`` values. Two installed
    packages registering one name for different classes is an error naming both: which
    one won would depend on the order packages are found."""
    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name] != ep.value:
            raise ScenarioLoadError(
                f"scenario name {ep.name!r} is registered twice: {found[ep.name]} and "
                f"{ep.value}; uninstall one package or name the class as module:Class"
            )
        found[ep.name] = ep.value
    return found


def is_file_reference(reference: str) -> bool:
    """``path/to/file.py:Class`` (the part before the last colon ends in ``.py``)."""
    path, sep, _ = reference.rpartition(":")
    return bool(sep) and path.endswith(".py")


def load_scenario_class(reference: str) -> type[Scenario]:
    """The scenario class ``reference`` names (cached per reference)."""
    return _load(reference.strip())


def make_scenario(reference: str) -> Scenario:
    """An instance of the scenario ``reference`` names."""
    cls = load_scenario_class(reference)
    try:
        return cls()
    except Exception as exc:
        raise ScenarioLoadError(
            f"{reference}: {cls.__name__}() failed: {type(exc).__name__}: {exc}"
        ) from exc


@functools.cache
def _load(reference: str) -> type[Scenario]:
    if not reference:
        raise ScenarioLoadError("empty scenario reference")
    if is_file_reference(reference):
        path, _, attribute = reference.rpartition(":")
        module = _import_file(reference, path)
    else:
        if ":" not in reference:
            reference_value = _registered_value(reference)
            module_name, _, attribute = reference_value.partition(":")
        else:
            module_name, _, attribute = reference.partition(":")
        if not _MODULE.fullmatch(module_name) or not _NAME.fullmatch(attribute):
            raise ScenarioLoadError(
                f"{reference!r} is not a scenario reference: use NAME, "
                "package.module:Class or ./file.py:Class"
            )
        module = _import(reference, module_name)
    return _checked(reference, _attribute(reference, module, attribute))


def _registered_value(name: str) -> str:
    registered = registered_scenarios()
    if name not in registered:
        known = ", ".join(sorted(registered)) or "none (is megasim installed?)"
        raise ScenarioLoadError(
            f"unknown scenario {name!r}; registered: {known}; or give "
            "package.module:Class or ./file.py:Class"
        )
    return registered[name]


def _import(reference: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(f"{missing}.")):
            raise ScenarioLoadError(f"{reference}: no module named {missing!r}") from exc
        raise ScenarioLoadError(f"{reference}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # the user's module raised while importing
        raise ScenarioLoadError(
            f"{reference}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _import_file(reference: str, path_text: str) -> Any:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ScenarioLoadError(f"{reference}: no such file {path}")
    path = path.resolve()
    # one stable module name per file, so pickled objects and repeated loads agree
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"megasim_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ScenarioLoadError(f"{reference}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ScenarioLoadError(
            f"{reference}: importing {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _attribute(reference: str, module: Any, attribute: str) -> Any:
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ScenarioLoadError(
            f"{reference}: {module.__name__} has no attribute {attribute!r}"
        ) from None


def _checked(reference: str, found: Any) -> type[Scenario]:
    from megasim.scenarios.base import Scenario  # deferred: see the module docstring

    if not inspect.isclass(found) or not issubclass(found, Scenario):
        raise ScenarioLoadError(
            f"{reference}: {found!r} is not a subclass of megasim.scenarios.base.Scenario"
        )
    section, model = found.section, found.settings_model
    if (section is None) != (model is None):
        raise ScenarioLoadError(
            f"{reference}: {found.__name__} must set both section and settings_model, or neither"
        )
    if section is not None:
        from pydantic import BaseModel

        if not (_NAME.fullmatch(section) and not section.startswith(("_", "model_"))):
            raise ScenarioLoadError(
                f"{reference}: {found.__name__}.section {section!r} cannot be a config key "
                "(a Python name, not starting with _ or model_)"
            )
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise ScenarioLoadError(
                f"{reference}: {found.__name__}.settings_model must be a pydantic model class"
            )
    return found
