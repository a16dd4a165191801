"""The segregation scenario's world: environments composed into a tree, each with listeners.

``Town`` (the environment a run steps) holds two kinds of children:

- ``grid``: a GridWorld, which does the real work (observations, moves, measures) and
  fires ``moved``, ``in_range`` and ``step_end``;
- one plain ``Environment`` per group (``group_<label>``) whose state is that group's
  measures after each step; it fires ``group_step`` so that a listener can follow one
  group without filtering the others.

Every event bubbles up to ``town``'s listeners (``Environment.emit``), so one listener on
``town`` for ``"*"`` sees everything. All of them are fired in the background
(env/events.py, one ``ListenerTasks`` for the whole tree): a slow listener never
holds up a step, and ``drain`` waits for them at the end of a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from megasim.agent import Agent
from megasim.env.base import DecisionBatch, Environment
from megasim.env.grid import GridWorld
from megasim.env.grid_view import GridView


def group_env_name(label: str) -> str:
    """A child name for a group: dots would break ``Environment.child``'s dotted paths."""
    return "group_" + label.replace(".", "_")


class Town(Environment):
    """The parent environment; the step protocol is the grid's, the rest is composition."""

    name = "town"

    def __init__(self, grid: GridWorld) -> None:
        super().__init__()
        self.grid = grid
        self.add_child(grid)
        self.groups = [self.add_child(Environment(group_env_name(g))) for g in grid.labels]
        self.state = {"step": 0}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Also makes the group children the snapshot has: a replica built from part of
        the population (a Ray shard's slice) may lack groups absent from its slice."""
        for name in snapshot.get("children", {}):
            if name not in self.children:
                self.add_child(Environment(name))
        super().restore(snapshot)
        self.groups = [self.children[group_env_name(g)] for g in self.grid.labels]

    def prepare(self) -> None:
        self.grid.prepare()

    def observe(self, agent: Agent) -> GridView:
        return self.grid.observe(agent)

    def reduce(self, batch: DecisionBatch) -> dict[str, Any]:
        return self.grid.reduce(batch)

    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        first = int(self.grid.state["step"]) == 0
        initial = self.grid.initial_summary() if first else None
        outcome = self.grid.combine(partials)
        if initial is not None:
            outcome["initial"] = initial  # the grid before step 1, for the report's step 0
        return outcome

    async def apply(self, step: int, outcome: Mapping[str, Any]) -> None:
        await self.grid.apply(step, outcome)
        for env, entry in zip(self.groups, outcome["groups"], strict=True):
            env.state.update(entry, step=step)
            env.fire("group_step", {"step": step, **entry})
        self.state["step"] = step
        self.fire("step_end", {"step": step, "env": self.name, **outcome})
