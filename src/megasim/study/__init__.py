"""Studies: a grid of runs (cells) under one folder, resumable, with one report.

Modules: ``spec`` (study file, grids, cells as run configs) -> ``estimate`` (dry-run
costs) -> ``runner`` (runs and resumes cells; ``scalability`` measures plain-asyncio
references) -> ``tables`` and ``breakdowns`` (DuckDB over the cells' decisions) ->
``plots``, ``html``, ``report`` (results beside the paper's numbers in ``reference.yaml``).
"""

from __future__ import annotations

from megasim.study.spec import Cell, Study, StudyError, load_study

__all__ = ["Cell", "Study", "StudyError", "load_study"]
