"""Chat rooms: agents discuss in rooms (one per group) whose transcripts are keyed state.

A room's recent posts live in the KeyedStore under ``room/<group>`` (partitioned by key,
in-process or in Ray actors), not in the snapshot every shard receives: a shard reads
only its own agents' rooms. What each room thinks on average (the opinions agents state
with their posts) is aggregate state, reduced across shards like the guessing game.
Posts of one step are appended in a seeded order (who speaks first is random but
reproducible), so a room's transcript is the same however agents are sharded.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from megasim.agent import Agent
from megasim.env.base import DecisionBatch, Environment, KeyedOp
from megasim.env.group_stats import add_partials, group_partial, moments
from megasim.seeding import derive_seed


def room_key(room: int) -> str:
    """The KeyedStore key of a room's transcript."""
    return f"room/{room}"


@dataclass(frozen=True, slots=True)
class Post:
    """One message in a room, with the opinion its author stated alongside it."""

    agent: int
    step: int
    opinion: float
    text: str


@dataclass(frozen=True, slots=True)
class ChatObservation:
    """What an agent sees before speaking: its room's recent posts, oldest first."""

    step: int  # the step about to be played, 1-based
    steps: int
    room: int
    members: int
    statement: str
    recent: tuple[Post, ...]
    room_mean: float | None  # the room's mean stated opinion last step
    low: float
    high: float


class ChatRoom(Environment):
    """Rooms discussing one ``statement``; opinions on a [low, high] agreement scale."""

    name = "chatroom"
    keyed = True

    def __init__(
        self,
        room_sizes: Sequence[int],
        steps: int,
        statement: str,
        window: int = 8,
        low: float = 0.0,
        high: float = 100.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.state = {
            "step": 0,
            "steps": steps,
            "statement": statement,
            "window": window,
            "low": low,
            "high": high,
            "seed": seed,
            "room_sizes": [int(n) for n in room_sizes],
            "means": [None] * len(room_sizes),
        }
        self._posts: dict[int, tuple[Post, ...]] = {}
        self._observations: dict[int, ChatObservation] = {}
        self._keys: tuple[int, list[str]] | None = None  # (id of the agent list, keys)

    @property
    def rooms(self) -> int:
        return len(self.state["room_sizes"])

    # --- shard side ----------------------------------------------------------------------
    def keys_for(self, agents: Sequence[Agent]) -> list[str]:
        if self._keys is None or self._keys[0] != id(agents):  # membership never changes
            self._keys = (id(agents), [room_key(g) for g in sorted({a.group for a in agents})])
        return self._keys[1]

    def load_keyed(self, values: Mapping[str, Any]) -> None:
        self._posts = {
            int(key.split("/", 1)[1]): tuple(Post(**post) for post in posts)
            for key, posts in values.items()
        }

    def prepare(self) -> None:
        self._observations = {}

    def observe(self, agent: Agent) -> ChatObservation:
        room = agent.group
        obs = self._observations.get(room)
        if obs is None:
            s = self.state
            obs = self._observations[room] = ChatObservation(
                step=int(s["step"]) + 1,
                steps=int(s["steps"]),
                room=room,
                members=int(s["room_sizes"][room]),
                statement=str(s["statement"]),
                recent=self._posts.get(room, ()),
                room_mean=s["means"][room],
                low=float(s["low"]),
                high=float(s["high"]),
            )
        return obs

    def writes(self, step: int, decisions: pa.Table) -> list[KeyedOp]:
        """Every valid decision with a message becomes a post in the author's room.

        Only the ``window`` posts with the highest seeded order per room leave the shard:
        the commit keeps the room's last ``window`` posts, and those are always among
        the union of every shard's top ``window`` (a million posts would otherwise cross
        to the partitions to be dropped there)."""
        spoke = pc.and_(decisions.column("valid"), pc.invert(pc.is_null(decisions.column("text"))))
        rows = decisions.filter(spoke).select(["agent_id", "group", "value", "text"])
        base = derive_seed(int(self.state["seed"]), step)
        keep = int(self.state["window"])
        by_room: dict[int, list[tuple[int, int, float, str]]] = {}
        for agent, group, value, text in zip(
            *(rows.column(c).to_pylist() for c in rows.column_names), strict=True
        ):
            by_room.setdefault(group, []).append((derive_seed(base, agent), agent, value, text))
        ops = []
        for room, posts in by_room.items():
            for order, agent, value, text in heapq.nlargest(keep, posts):
                post = {"agent": agent, "step": step, "opinion": value, "text": text}
                ops.append(KeyedOp(room_key(room), order, 0, "append", post, keep))
        return ops

    def reduce(self, batch: DecisionBatch) -> dict[str, Any]:
        return group_partial(batch, self.rooms)

    # --- driver side ---------------------------------------------------------------------
    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        totals = add_partials(partials, self.rooms)
        rooms = []
        for i in range(self.rooms):
            valid, mean, std = moments(totals, [i])
            rooms.append(
                {
                    "room": i,
                    "n": totals["n"][i],
                    "valid": valid,
                    "mean": None if mean is None else float(mean),
                    "std": std,
                }
            )
        n_all = sum(totals["n"])
        valid, mean, std = moments(totals, list(range(self.rooms)))
        room_means = [r["mean"] for r in rooms if r["mean"] is not None]
        spread = max(room_means) - min(room_means) if room_means else None
        return {
            "n": n_all,
            "valid": valid,
            "invalid": n_all - valid,
            "mean": None if mean is None else float(mean),
            "std": std,
            "room_spread": spread,  # highest minus lowest room mean: polarisation
            "rooms": rooms,
        }

    async def apply(self, step: int, outcome: Mapping[str, Any]) -> None:
        means = list(self.state["means"])
        for room in outcome["rooms"]:
            if room["mean"] is not None:  # a silent room keeps last step's mean
                means[room["room"]] = room["mean"]
        self.state["means"] = means
        await super().apply(step, outcome)
