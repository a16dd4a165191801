"""Post-run reporting: statistics (DuckDB over Parquet), plots and a rich terminal report."""

from megasim.report.plots import histogram_counts, write_plots
from megasim.report.render import render_report
from megasim.report.summary import (
    BREAKDOWN_KEYS,
    BreakdownKey,
    BreakdownRow,
    GameParams,
    ReportError,
    RoundStats,
    breakdown,
    load_game,
    round_table,
)

__all__ = [
    "BREAKDOWN_KEYS",
    "BreakdownKey",
    "BreakdownRow",
    "GameParams",
    "ReportError",
    "RoundStats",
    "breakdown",
    "histogram_counts",
    "load_game",
    "render_report",
    "round_table",
    "write_plots",
]
