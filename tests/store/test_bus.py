"""The run-directory bus: status file and command files."""

from __future__ import annotations

from pathlib import Path

import pytest

from megasim.store.bus import post_command, read_status, take_commands, write_status


def test_status_round_trips_and_missing_or_corrupt_reads_none(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    write_status(tmp_path, {"state": "running", "step": 3})
    assert read_status(tmp_path) == {"state": "running", "step": 3}
    (tmp_path / "status.json").write_text("{half")
    assert read_status(tmp_path) is None


def test_commands_are_taken_once_in_posting_order(tmp_path: Path) -> None:
    first = post_command(tmp_path, "pause", "test")
    second = post_command(tmp_path, "restart_shard", "test", shard=2)
    taken = take_commands(tmp_path)
    assert [c.id for c in taken] == [first.id, second.id]
    assert taken[1].args == {"shard": 2}
    assert take_commands(tmp_path) == []


def test_unknown_action_refused_and_malformed_file_dropped(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        post_command(tmp_path, "explode", "test")
    (tmp_path / "control").mkdir(exist_ok=True)
    (tmp_path / "control" / "0-bad.json").write_text("not json")
    post_command(tmp_path, "stop", "test")
    taken = take_commands(tmp_path)
    assert [c.action for c in taken] == ["stop"]
    assert list((tmp_path / "control").glob("*.json")) == []
