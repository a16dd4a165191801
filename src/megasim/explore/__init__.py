"""Reading a run's agents at scale: filters, paging, sampling and export (DuckDB)."""
