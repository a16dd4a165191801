"""Disk full (issue 10): a run on a small filesystem (a 512 KiB tmpfs, mounted by the test,
which needs root) stops with a clear message when it fills up, its last checkpoint intact;
copied to a bigger disk, ``megasim resume`` completes it with the decisions of an unbroken
run. Where mounting is not permitted the test is skipped with the exact error."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

import megasim.cli as cli
from megasim.runtime.checkpoint import CheckpointStore, read_agent_states
from megasim.store.run_dir import RunDirectory
from tests.campaign.fuzz import clean_exit

pytestmark = pytest.mark.slow
runner = CliRunner()
ROUNDS, AGENTS = 24, 5000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs, unmounted afterwards whatever happens."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(done.stderr or done.stdout).strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def config(out: Path) -> dict[str, Any]:
    return {
        "name": "full",
        "seed": 9,
        "rounds": ROUNDS,
        "population": {
            "size": AGENTS,
            "groups": 2,
            "attributes": {
                "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P4": 0.5}}
            },
        },
        "models": {"s": {"backend": "surrogate"}},
        "out_dir": str(out),
    }


def decisions(run: Path) -> pa.Table:
    table = RunDirectory(run).read_decisions().drop_columns(["latency_ms", "shard"])
    return table.sort_by([("step", "ascending"), ("agent_id", "ascending")])


def test_a_full_disk_stops_cleanly_and_resume_completes_elsewhere(
    tmp_path: Path, small_disk: Path
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config(small_disk)))
    result = runner.invoke(cli.app, ["run", str(cfg), "--run-id", "full", "--quiet"])
    clean_exit(result, allowed=(1,))
    run = small_disk / "full"
    message = result.output.replace("\n", " ")
    assert "no space left on device" in message, message
    assert f"megasim resume {run}" in message, message
    store = CheckpointStore(run)
    latest = store.latest()
    assert latest is not None
    assert 0 < latest[0] < ROUNDS, "the disk must fill mid-run"
    assert f"continue from step {latest[0]}" in message
    driver = store.load_resumable(latest[1])  # the last checkpoint is intact
    assert driver["step"] == latest[0]
    read_agent_states(latest[1])

    bigger = tmp_path / "bigger" / "full"
    shutil.copytree(run, bigger)
    resumed = runner.invoke(cli.app, ["resume", str(bigger), "--quiet"])
    clean_exit(resumed, allowed=(0,))
    cfg.write_text(yaml.safe_dump(config(tmp_path / "runs")))
    unbroken = runner.invoke(cli.app, ["run", str(cfg), "--run-id", "whole", "--quiet"])
    clean_exit(unbroken, allowed=(0,))
    got = decisions(bigger)
    assert got.num_rows == AGENTS * ROUNDS
    assert got.equals(decisions(tmp_path / "runs" / "whole"))
    print(f"\ndisk full after step {latest[0]} of {ROUNDS}: {message.strip()}")
