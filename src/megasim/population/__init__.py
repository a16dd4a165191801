"""Population tool: sample heterogeneous agent personas from a YAML spec.

Load a spec with :func:`load_population_spec`, sample a pyarrow table with
:func:`sample_population`, and verify it with :func:`check_marginals`.
"""

from megasim.population._stats import largest_remainder
from megasim.population.base import (
    DEFAULTED_ATTRIBUTES,
    RESERVED_COLUMNS,
    MarginalCheck,
    PopulationSpecError,
)
from megasim.population.checks import check_marginals
from megasim.population.checks_render import render_checks
from megasim.population.sampling import sample_population
from megasim.population.spec import PopulationSpec, load_population_spec, parse_population_spec

__all__ = [
    "DEFAULTED_ATTRIBUTES",
    "RESERVED_COLUMNS",
    "MarginalCheck",
    "PopulationSpec",
    "PopulationSpecError",
    "check_marginals",
    "largest_remainder",
    "load_population_spec",
    "parse_population_spec",
    "render_checks",
    "sample_population",
]
