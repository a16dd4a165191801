"""The p-beauty contest ("guess 2/3 of the average") as an aggregate environment.

Each group plays its own game: the winning number of a group is
``ratio * mean(valid guesses) + offset``. Shards reduce guesses to per-group
counts and sums, so a million guesses cross process boundaries as a few numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from megasim.agent import Agent
from megasim.env.base import DecisionBatch, Environment


@dataclass(frozen=True, slots=True)
class GuessObservation:
    """What a player sees before guessing. ``previous_winner`` is None in round 1."""

    round: int
    rounds: int
    group: int
    players: int
    previous_winner: float | None
    ratio: float
    offset: float
    low: float
    high: float


class GuessGame(Environment):
    """Guess-``ratio``-of-the-average game over ``rounds`` rounds, per group."""

    name = "guess_game"

    def __init__(
        self,
        group_sizes: Sequence[int],
        rounds: int,
        ratio: float = 2 / 3,
        offset: float = 0.0,
        low: float = 0.0,
        high: float = 100.0,
    ) -> None:
        super().__init__()
        self.state = {
            "step": 0,
            "rounds": rounds,
            "ratio": ratio,
            "offset": offset,
            "low": low,
            "high": high,
            "group_sizes": [int(n) for n in group_sizes],
            "winners": [None] * len(group_sizes),  # previous round's winning number per group
        }
        self._observations: list[GuessObservation] = []

    @property
    def groups(self) -> int:
        return len(self.state["group_sizes"])

    def prepare(self) -> None:
        s = self.state
        self._observations = [
            GuessObservation(
                round=int(s["step"]) + 1,
                rounds=int(s["rounds"]),
                group=g,
                players=int(s["group_sizes"][g]),
                previous_winner=s["winners"][g],
                ratio=float(s["ratio"]),
                offset=float(s["offset"]),
                low=float(s["low"]),
                high=float(s["high"]),
            )
            for g in range(self.groups)
        ]

    def observe(self, agent: Agent) -> GuessObservation:
        if not self._observations:
            self.prepare()
        return self._observations[agent.group]

    def reduce(self, batch: DecisionBatch) -> dict[str, Any]:
        groups = batch.groups[batch.valid]
        values = batch.values[batch.valid]
        g = self.groups
        return {
            "n": np.bincount(batch.groups, minlength=g).tolist(),
            "valid": np.bincount(groups, minlength=g).tolist(),
            "sum": np.bincount(groups, weights=values, minlength=g).tolist(),
            "sumsq": np.bincount(groups, weights=values * values, minlength=g).tolist(),
        }

    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        g = self.groups
        totals = {key: np.zeros(g) for key in ("n", "valid", "sum", "sumsq")}
        for partial in partials:
            for key, total in totals.items():
                total += np.asarray(partial[key], dtype=np.float64)
        ratio, offset = float(self.state["ratio"]), float(self.state["offset"])
        groups: list[dict[str, Any]] = []
        for i in range(g):
            valid = int(totals["valid"][i])
            mean = float(totals["sum"][i] / valid) if valid else None
            var = float(totals["sumsq"][i] / valid - mean * mean) if mean is not None else None
            groups.append(
                {
                    "group": i,
                    "n": int(totals["n"][i]),
                    "valid": valid,
                    "mean": mean,
                    "std": float(np.sqrt(max(var, 0.0))) if var is not None else None,
                    "winner": ratio * mean + offset if mean is not None else None,
                }
            )
        valid_all = int(totals["valid"].sum())
        mean_all = float(totals["sum"].sum() / valid_all) if valid_all else None
        return {
            "n": int(totals["n"].sum()),
            "valid": valid_all,
            "invalid": int(totals["n"].sum()) - valid_all,
            "mean": mean_all,
            "winner": ratio * mean_all + offset if mean_all is not None else None,
            "groups": groups,
        }

    async def apply(self, step: int, outcome: Mapping[str, Any]) -> None:
        winners = list(self.state["winners"])
        for group in outcome["groups"]:
            if group["winner"] is not None:  # a round with no valid guess keeps the old number
                winners[group["group"]] = group["winner"]
        self.state["winners"] = winners
        await super().apply(step, outcome)
