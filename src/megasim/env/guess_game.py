"""The p-beauty contest ("guess 2/3 of the average") as an aggregate environment.

Each group plays its own game: the winning number of a group is
``ratio * mean(valid guesses) + offset``. Shards reduce guesses to per-group
counts and sums, so a million guesses cross process boundaries as a few numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from megasim.agent import Agent
from megasim.env.base import DecisionBatch, Environment
from megasim.env.group_stats import add_partials, group_partial, moments


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
        return group_partial(batch, self.groups)

    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        g = self.groups
        totals = add_partials(partials, g)
        groups = [{"group": i, "n": totals["n"][i], **self._stats(totals, [i])} for i in range(g)]
        n_all = sum(totals["n"])
        pooled = self._stats(totals, list(range(g)))
        return {
            "n": n_all,
            "valid": pooled["valid"],
            "invalid": n_all - pooled["valid"],
            "mean": pooled["mean"],
            "std": pooled["std"],
            "winner": pooled["winner"],
            "groups": groups,
        }

    def _stats(self, totals: Mapping[str, list[int]], members: list[int]) -> dict[str, Any]:
        """Mean, std and winning number over ``members`` groups, rounded once from exact sums."""
        valid, mean, std = moments(totals, members)
        if mean is None:
            return {"valid": 0, "mean": None, "std": None, "winner": None}
        mean_f = float(mean)
        ratio, offset = float(self.state["ratio"]), float(self.state["offset"])
        return {"valid": valid, "mean": mean_f, "std": std, "winner": ratio * mean_f + offset}

    async def apply(self, step: int, outcome: Mapping[str, Any]) -> None:
        winners = list(self.state["winners"])
        for group in outcome["groups"]:
            if group["winner"] is not None:  # a round with no valid guess keeps the old number
                winners[group["group"]] = group["winner"]
        self.state["winners"] = winners
        await super().apply(step, outcome)
