"""Shared by the benchmarks: each repeat in a fresh process (clean memory figures), then
the median and every run of each measured figure."""

from __future__ import annotations

import json
import statistics
import subprocess
from typing import Any


def runs_in_fresh_processes(command: list[str], repeat: int) -> list[dict[str, Any]]:
    """Run ``command`` ``repeat`` times; each prints its figures as one JSON line, last."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return runs


def print_medians(title: str, runs: list[dict[str, Any]], digits: int = 3) -> None:
    print(title)
    for key in runs[0]:
        values = [round(float(r[key]), digits) for r in runs]
        print(f"  {key:16s} median {statistics.median(values):12.{digits}f}   runs {values}")
