"""A scenario's own section of the run config (see megasim.plugins).

``SimulationConfig.model_validate`` finds the scenario a config names and validates with
``config_model(reference)``: SimulationConfig plus one field, the scenario's ``section``
typed by its ``settings_model``, so errors name ``section.field`` and unknown keys stay
errors. Sections of other registered scenarios are refused (or dropped when they hold
only defaults, as old run directories stored them), and ``Path`` fields of the section
are resolved relative to the config file like every other path.
"""

from __future__ import annotations

import functools
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, create_model

from megasim.config import DEFAULT_SCENARIO, SimulationConfig, from_config_dir
from megasim.plugins import ScenarioLoadError, load_scenario_class, registered_scenarios


def field_error(field: str, value: object, message: str) -> ValidationError:
    return ValidationError.from_exception_data(
        "SimulationConfig",
        [{"type": "value_error", "loc": (field,), "input": value, "ctx": {"error": message}}],
    )


@functools.cache
def config_model(reference: str) -> type[SimulationConfig]:
    """SimulationConfig plus the section of the scenario ``reference`` names (cached)."""
    scenario = load_scenario_class(reference)
    section, settings = scenario.section, scenario.settings_model
    if section is None or settings is None:
        return SimulationConfig
    if section in SimulationConfig.model_fields:
        raise ScenarioLoadError(
            f"{reference}: section {section!r} clashes with the run config's own field"
        )
    fields: dict[str, Any] = {section: (settings, Field(default_factory=settings))}
    return create_model(f"{scenario.__name__}RunConfig", __base__=SimulationConfig, **fields)


def without_stale_sections(data: dict[str, Any], model: type[SimulationConfig]) -> dict[str, Any]:
    """Another registered scenario's section: an error naming its scenario when it holds
    settings, dropped when it holds only defaults (run directories of megasim < 0.4
    stored every built-in's section)."""
    for key in [k for k in data if k not in model.model_fields]:
        owner = _owner_of_section(key)
        if owner is None:
            continue  # an unknown key: the usual "extra inputs" error
        name, settings = owner
        value = data[key]
        try:
            is_default = value is None or settings.model_validate(value) == settings()
        except ValidationError:
            is_default = False
        if not is_default:
            scenario = data.get("scenario", DEFAULT_SCENARIO)
            raise field_error(
                key, value, f"applies to scenario {name} only; this run's scenario is {scenario}"
            )
        del data[key]
    return data


def _owner_of_section(key: str) -> tuple[str, type[BaseModel]] | None:
    for name in registered_scenarios():
        try:
            scenario = load_scenario_class(name)
        except ScenarioLoadError:
            continue
        if scenario.section == key and scenario.settings_model is not None:
            return name, scenario.settings_model
    return None


def resolve_section_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """The same rule inside the scenario's own section: a field typed ``Path`` (at any
    depth, e.g. ``social.graph.path``) given relative is made absolute from the config's
    folder. A reference that does not load is left for validation to report."""
    reference = data.get("scenario", DEFAULT_SCENARIO)
    try:
        scenario = load_scenario_class(str(reference))
    except ScenarioLoadError:
        return data
    section, model = scenario.section, scenario.settings_model
    if section is None or model is None or not isinstance(data.get(section), dict):
        return data
    return {**data, section: _paths_of_model(model, data[section], base)}


def _paths_of_model(model: type[BaseModel], value: dict[str, Any], base: Path) -> dict[str, Any]:
    resolved = dict(value)
    for name, field in model.model_fields.items():
        if name not in resolved:
            continue
        kinds = typing.get_args(field.annotation) or (field.annotation,)
        if Path in kinds:
            resolved[name] = from_config_dir(base, resolved[name], absolute=True)
            continue
        nested = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if nested and isinstance(resolved[name], dict):
            resolved[name] = _paths_of_model(nested[0], resolved[name], base)
    return resolved
