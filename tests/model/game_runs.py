"""Helpers for tests that play the guess game against an OpenAI-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megasim.config import SimulationConfig
from megasim.run import RunResult


def game_config(
    tmp_path: Path,
    base_url: str,
    *,
    agents: int = 40,
    rounds: int = 2,
    merge: bool = True,
    model: str = "smollm2",
    variants: tuple[str, ...] = ("P1", "P3"),
    **model_settings: Any,
) -> SimulationConfig:
    """The issue's setup: P1/P3 agents (by default), one group, a plain ``backend: openai``
    model."""
    return SimulationConfig.model_validate(
        {
            "name": "compat",
            "seed": 3,
            "rounds": rounds,
            "population": {
                "size": agents,
                "groups": 1,
                "attributes": {
                    "prompt_variant": {
                        "dist": "categorical",
                        "weights": {v: 1 / len(variants) for v in variants},
                    }
                },
            },
            "models": {
                "srv": {
                    "backend": "openai",
                    "base_url": base_url,
                    "model": model,
                    "api_key_env": None,
                    "merge": merge,
                    **model_settings,
                }
            },
            "out_dir": str(tmp_path / "runs"),
        }
    )


def decisions(result: RunResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = result.run_dir.read_decisions().to_pylist()
    return rows


def model_errors(rows: list[dict[str, Any]]) -> list[str]:
    """Errors that are not the model's answer failing to parse (those are kept as invalid)."""
    return [r["error"] for r in rows if r["error"] and not r["error"].startswith("parse:")]
