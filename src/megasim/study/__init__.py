"""Studies: a grid of runs (cells) under one folder, resumable, with one report.

Layers: ``spec`` (the grid, cells as run configs) -> ``estimate`` (dry-run costs) ->
``runner`` (runs and resumes cells) -> ``tables``/``plots``/``report`` (results beside the
paper's published numbers in ``reference.yaml``).
"""

from __future__ import annotations

from megasim.study.spec import Cell, Study, StudyError, load_study

__all__ = ["Cell", "Study", "StudyError", "load_study"]
