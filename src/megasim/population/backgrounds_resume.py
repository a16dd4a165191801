"""Resuming a background run: which agents are done, which remain, and their attributes.

An agent is done when the input says "ok" or "rejected" for it, or when the sidecar has
a line for it. Accepted stories from both are loaded into the near-duplicate index, so a
resumed run checks new stories against everything accepted before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from megasim.population.backgrounds_dedup import NearDuplicateIndex
from megasim.population.backgrounds_prompt import attribute_columns
from megasim.population.backgrounds_sidecar import DONE_STATUSES, input_statuses, read_sidecar

BATCH_ROWS = 4096
"""Rows turned into Python values at a time: memory stays flat for a million agents."""


def _story_of(background_json: Any, background: Any) -> str | None:
    if isinstance(background_json, str):
        try:
            data = json.loads(background_json)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("story"), str):
            return str(data["story"])
    return background if isinstance(background, str) and background.strip() else None


def done_and_index(table: pa.Table, sidecar: Path) -> tuple[set[int], NearDuplicateIndex]:
    """Agent ids already finished, and the accepted stories to check new ones against."""
    index = NearDuplicateIndex()
    done: set[int] = set()
    statuses = input_statuses(table)
    ids = table.column("agent_id").to_pylist()
    has = set(table.column_names)
    texts = table.column("background").to_pylist() if "background" in has else None
    jsons = table.column("background_json").to_pylist() if "background_json" in has else None
    for i, status in enumerate(statuses):
        if status not in DONE_STATUSES:
            continue
        done.add(int(ids[i]))
        if status == "ok":
            story = _story_of(jsons[i] if jsons else None, texts[i] if texts else None)
            if story:
                index.add(story, int(ids[i]))
    for record in read_sidecar(sidecar):
        done.add(record.agent_id)
        if record.background_status == "ok" and record.story:
            index.add(record.story, record.agent_id)
    return done, index


def pending_agents(table: pa.Table, sidecar: Path) -> npt.NDArray[np.bool_]:
    """Which rows still need a background (not done in the input nor in the sidecar)."""
    done: set[int] = {r.agent_id for r in read_sidecar(sidecar)}
    ids = table.column("agent_id").to_numpy(zero_copy_only=False)
    statuses = np.array(input_statuses(table), dtype=object)
    in_sidecar = np.isin(ids, np.fromiter(done, dtype=np.int64, count=len(done)))
    done_in_input = np.isin(statuses, list(DONE_STATUSES))
    return np.asarray(~(in_sidecar | done_in_input), dtype=np.bool_)


def row_attributes(table: pa.Table, row: int) -> dict[str, Any]:
    """The attributes of one row, as the prompt sees them."""
    one = table.slice(row, 1)
    return {name: one.column(name)[0].as_py() for name in attribute_columns(table.column_names)}


def pending_rows(
    table: pa.Table, done: set[int], limit: int | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(agent id, attributes) of pending rows in table order, a batch at a time."""
    names = attribute_columns(table.column_names)
    given = 0
    for start in range(0, table.num_rows, BATCH_ROWS):
        batch = table.slice(start, BATCH_ROWS)
        ids = batch.column("agent_id").to_pylist()
        values = [batch.column(name).to_pylist() for name in names]
        for i, agent_id in enumerate(ids):
            if int(agent_id) in done:
                continue
            if limit is not None and given >= limit:
                return
            given += 1
            yield int(agent_id), {name: values[k][i] for k, name in enumerate(names)}
