"""Agent-to-agent messages: posted during a step, delivered in bulk at the next step.

Each shard has one Mailbox shared by its agents. What agents send during step n is
returned to the driver with the shard's result; the driver's MessageRouter sorts it by
the receiving shard (a group broadcast goes only to the shards that hold members of that
group: partitioned by key) and hands each shard its inbox with step n+1. One bulk
transfer per shard per step, however many agents talk; messages in flight are part of
the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from megasim.message import Message


class Mailbox:
    """One shard's post office."""

    __slots__ = ("_broadcast", "_direct", "outgoing", "step")

    def __init__(self) -> None:
        self.outgoing: list[Message] = []
        self._direct: dict[int, list[Message]] = {}
        self._broadcast: dict[int | None, list[Message]] = {}
        self.step = 0

    def deliver(self, messages: Iterable[Message]) -> None:
        """This step's inbox for the shard (replaces the previous step's)."""
        self._direct.clear()
        self._broadcast.clear()
        for message in messages:
            if message.receiver is None:
                self._broadcast.setdefault(message.group, []).append(message)
            else:
                self._direct.setdefault(message.receiver, []).append(message)

    def inbox(self, agent_id: int, group: int) -> list[Message]:
        """Messages for ``agent_id``: addressed to it, or broadcast to its group by others."""
        direct = self._direct.get(agent_id, [])
        broadcast = [m for m in self._broadcast.get(group, ()) if m.sender != agent_id]
        return direct + broadcast if broadcast else list(direct)

    def post(self, message: Message) -> None:
        self.outgoing.append(message)

    def hold_unread(self, acted: set[int]) -> int:
        """Sparse activation: messages addressed to agents that did not act this step are
        sent again (ahead of this step's), so they wait, in flight and checkpointed, until
        their receiver acts. A group broadcast is read by the members who act in the step
        it arrives, like a post in a room. Returns how many are held."""
        held = [m for r, ms in self._direct.items() if r not in acted for m in ms]
        if held:
            self.outgoing = held + self.outgoing
        return len(held)

    def collect(self) -> list[Message]:
        """Everything posted this step; the mailbox starts empty for the next."""
        out, self.outgoing = self.outgoing, []
        return out


class MessageRouter:
    """Which shard holds which agent, for sorting messages by destination."""

    def __init__(
        self,
        agent_ids_by_shard: Sequence[npt.NDArray[np.int64]],
        groups_by_shard: Sequence[npt.NDArray[np.integer]] | None = None,
    ) -> None:
        ids = np.concatenate(agent_ids_by_shard) if agent_ids_by_shard else np.array([])
        shards = (
            np.concatenate(
                [np.full(len(a), i, dtype=np.int32) for i, a in enumerate(agent_ids_by_shard)]
            )
            if agent_ids_by_shard
            else np.array([], dtype=np.int32)
        )
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order].astype(np.int64)
        self._shards = shards[order]
        self.shards = len(agent_ids_by_shard)
        self.undeliverable = 0  # messages to agents that do not exist, counted, not routed
        # partitioned by key: a group broadcast goes only to the shards holding that group
        self._group_shards: dict[int, list[int]] | None = None
        if groups_by_shard is not None:
            members: dict[int, list[int]] = {}
            for shard, groups in enumerate(groups_by_shard):
                for group in np.unique(groups).tolist():
                    members.setdefault(int(group), []).append(shard)
            self._group_shards = members

    def route(self, messages: Sequence[Message]) -> dict[int, list[Message]]:
        inboxes: dict[int, list[Message]] = {i: [] for i in range(self.shards)}
        direct = [m for m in messages if m.receiver is not None]
        everyone = list(range(self.shards))
        for message in messages:
            if message.receiver is None:
                shards = everyone
                if self._group_shards is not None and message.group is not None:
                    shards = self._group_shards.get(message.group, [])
                for shard in shards:
                    inboxes[shard].append(message)
        if direct:
            receivers = np.fromiter((m.receiver for m in direct), dtype=np.int64, count=len(direct))
            positions = np.searchsorted(self._ids, receivers)
            positions = np.minimum(positions, max(len(self._ids) - 1, 0))
            known = (self._ids[positions] == receivers) if len(self._ids) else np.zeros(0, bool)
            for message, position, ok in zip(
                direct, positions.tolist(), known.tolist(), strict=True
            ):
                if ok:
                    inboxes[int(self._shards[position])].append(message)
                else:
                    self.undeliverable += 1
        return inboxes


def router_for(population: pa.Table, slices: Sequence[tuple[int, int]]) -> MessageRouter:
    """The router of a population split into contiguous ``(offset, length)`` shard slices."""
    ids = population.column("agent_id").to_numpy()
    groups = population.column("group").to_numpy()
    return MessageRouter(
        [np.asarray(ids[o : o + n], dtype=np.int64) for o, n in slices],
        [np.asarray(groups[o : o + n], dtype=np.int64) for o, n in slices],
    )
