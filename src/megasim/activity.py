"""Sparse activation: which agents act in a step, decided without a per-agent Python loop.

Large social simulations (OASIS: a million users) do not have every agent act every
step: most users are idle most hours. An agent is active in step ``n`` when a hash of
(run seed, step, agent id) falls below its activity probability, scaled by the hour's
factor of a daily schedule. The hash is SplitMix64 in numpy (uint64 arithmetic wraps,
which is what the mixer needs), so a million agents cost a few vectorised passes, and
the mask depends only on (seed, step, agent): the same agents act with 1 or K shards,
locally or on Ray, and after a resume.

Inactive agents make no model call and write no decision row (step files hold the
active agents only); shards report how many were active (``ShardStepResult.active``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from megasim.seeding import derive_seed

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / float(1 << 53)


class ActivitySettings(BaseModel):
    """Who acts in a step: ``probability`` (or the population column ``column``) times the
    ``schedule`` factor of the step's hour of day. Defaults: everyone, every step."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(1.0, ge=0.0, le=1.0, description="chance an agent acts")
    column: str | None = Field(
        None, description="population column with each agent's probability (0-1); overrides"
    )
    schedule: list[float] | None = Field(
        None, description="24 factors by hour of day (0 = midnight), multiplied in"
    )
    hours_per_step: float = Field(1.0, gt=0.0, le=24.0, description="simulated hours a step")
    start_hour: float = Field(0.0, ge=0.0, lt=24.0, description="the hour step 1 starts at")

    @model_validator(mode="after")
    def _schedule_has_24_hours(self) -> ActivitySettings:
        if self.schedule is not None:
            if len(self.schedule) != 24:
                raise ValueError(
                    f"schedule needs 24 factors (one per hour), not {len(self.schedule)}"
                )
            if any(f < 0 or not np.isfinite(f) for f in self.schedule):
                raise ValueError("schedule factors must be finite and >= 0")
        return self

    @property
    def everyone(self) -> bool:
        """True when every agent acts every step (no mask needed)."""
        return self.column is None and self.probability >= 1.0 and self.schedule is None

    def hour_factor(self, step: int) -> float:
        """The schedule's factor for the hour in which ``step`` (1-based) starts."""
        if self.schedule is None:
            return 1.0
        hour = int((self.start_hour + (step - 1) * self.hours_per_step) % 24.0)
        return float(self.schedule[hour])


def unit_hash(seed: int, step: int, agent_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """A uniform [0, 1) number per agent, a pure function of (seed, step, agent id)."""
    base = np.uint64(derive_seed(seed, step))
    x = agent_ids.astype(np.uint64) ^ base
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def active_mask(
    seed: int,
    step: int,
    agent_ids: npt.NDArray[np.int64],
    probability: float | npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Which of ``agent_ids`` act in ``step``: hash below the (per-agent) probability."""
    return unit_hash(seed, step, agent_ids) < probability


def column_probabilities(table: pa.Table, column: str) -> npt.NDArray[np.float64]:
    """A population column as probabilities; missing values count as 0 (never active)."""
    if column not in table.column_names:
        raise KeyError(f"activity.column: the population has no column {column!r}")
    values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    clipped: npt.NDArray[np.float64] = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    return clipped


class ActivityPlan:
    """Activity of one shard's agents: settings, seed and each agent's base probability."""

    def __init__(
        self,
        settings: ActivitySettings,
        seed: int,
        agent_ids: npt.NDArray[np.int64],
        probability: npt.NDArray[np.float64] | None = None,
    ) -> None:
        self.settings = settings
        self.seed = seed
        self.agent_ids = agent_ids
        self.probability: float | npt.NDArray[np.float64] = (
            settings.probability if probability is None else probability
        )

    @classmethod
    def build(cls, settings: ActivitySettings, seed: int, population: pa.Table) -> ActivityPlan:
        """For the agents of ``population`` (one shard's slice, in agent order)."""
        ids = population.column("agent_id").to_numpy().astype(np.int64)
        per_agent = column_probabilities(population, settings.column) if settings.column else None
        return cls(settings, seed, ids, per_agent)

    @classmethod
    def for_agents(
        cls, settings: ActivitySettings, seed: int, agents: Sequence[Any]
    ) -> ActivityPlan:
        """From agent objects (their ``id`` and persona), when no population slice is at
        hand; reads the column once per agent, so prefer ``build`` at scale."""
        ids = np.fromiter((a.id for a in agents), dtype=np.int64, count=len(agents))
        per_agent = None
        if settings.column is not None:
            raw = [a.persona.get(settings.column) for a in agents]
            per_agent = np.clip(
                np.array([v if isinstance(v, int | float) else 0.0 for v in raw], np.float64),
                0.0,
                1.0,
            )
        return cls(settings, seed, ids, per_agent)

    def aligned_to(self, agent_ids: npt.NDArray[np.int64]) -> ActivityPlan:
        """This plan for agents in the order of ``agent_ids`` (a scenario may build its
        agents in another order than the population rows); a ValueError if they differ."""
        if np.array_equal(agent_ids, self.agent_ids):
            return self
        order = np.argsort(self.agent_ids, kind="stable")
        at = np.searchsorted(self.agent_ids, agent_ids, sorter=order)
        found = order[np.minimum(at, order.size - 1)] if order.size else at
        if order.size == 0 or not np.array_equal(self.agent_ids[found], agent_ids):
            raise ValueError("activity: the shard's agents are not the population rows given")
        per_agent = self.probability[found] if isinstance(self.probability, np.ndarray) else None
        return ActivityPlan(self.settings, self.seed, agent_ids, per_agent)

    def mask(self, step: int) -> npt.NDArray[np.bool_] | None:
        """Active agents of ``step`` (positions in the shard's agent list); None: all."""
        if self.settings.everyone:
            return None
        factor = self.settings.hour_factor(step)
        return active_mask(self.seed, step, self.agent_ids, self.probability * factor)
