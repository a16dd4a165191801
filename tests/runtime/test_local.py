"""LocalRuntime: shards split the population; the number of shards never changes results."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from megasim.config import SimulationConfig
from megasim.run import run_simulation
from megasim.runtime.local import shard_slices


@given(st.integers(0, 10_000), st.integers(1, 64))
def test_shard_slices_cover_rows_evenly(rows: int, shards: int) -> None:
    slices = shard_slices(rows, shards)
    assert len(slices) == shards
    assert sum(length for _, length in slices) == rows
    offsets = [offset for offset, _ in slices]
    assert offsets == sorted(offsets)
    lengths = [length for _, length in slices]
    assert max(lengths) - min(lengths) <= 1
    for (offset, length), (next_offset, _) in itertools.pairwise(slices):
        assert offset + length == next_offset


def config(tmp_path: Path, shards: int, model: str) -> SimulationConfig:
    models = {
        "surrogate": {"backend": "surrogate"},
        "scripted": {"backend": "scripted", "responses": ["5", "50", "x", "99"]},
    }
    return SimulationConfig.model_validate(
        {
            "seed": 3,
            "rounds": 3,
            "population": {
                "size": 1001,
                "groups": 3,
                "attributes": {
                    "prompt_variant": {
                        "dist": "categorical",
                        "weights": {"P1": 0.25, "P2": 0.25, "P4": 0.25, "P5": 0.25},
                    },
                    "education": {
                        "dist": "categorical",
                        "weights": {"PhD": 0.5, "bachelor": 0.5},
                    },
                },
            },
            "models": {model: models[model]},
            "runtime": {"shards": shards},
            "out_dir": str(tmp_path),
        }
    )


async def test_results_identical_for_1_2_4_shards(tmp_path: Path) -> None:
    for model in ("surrogate", "scripted"):
        tables = []
        outcomes = []
        for shards in (1, 2, 4):
            result = await run_simulation(
                config(tmp_path, shards, model), run_id=f"{model}-{shards}"
            )
            table = result.run_dir.read_decisions().drop_columns(["shard", "latency_ms"])
            tables.append(table.sort_by([("step", "ascending"), ("agent_id", "ascending")]))
            outcomes.append([s.outcome for s in result.steps])
            shard_ids = result.run_dir.read_decisions().column("shard").to_pylist()
            assert len(set(shard_ids)) == shards
        assert tables[0].equals(tables[1])
        assert tables[0].equals(tables[2])
        assert outcomes[0] == outcomes[1] == outcomes[2]
