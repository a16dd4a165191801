"""Shared fixtures: small configs written to temporary files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a run config (defaults: 20 scripted agents, 2 rounds) and return its path."""

    def _write(name: str = "cfg.yaml", **overrides: Any) -> Path:
        config: dict[str, Any] = {
            "name": "t",
            "seed": 7,
            "rounds": 2,
            "population": {
                "size": 20,
                "groups": 2,
                "attributes": {
                    "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P2": 0.5}}
                },
            },
            "models": {"scripted": {"backend": "scripted", "responses": ["10", "20", "abc"]}},
            "out_dir": str(tmp_path / "runs"),
        }
        config.update(overrides)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return _write
