"""Posts and the recommenders that pick an agent's feed from them.

A post is stored in keyed state as a plain JSON list ``[post_id, author, step, stance,
text, ref]`` (``ref``: the reposted post's id, else 0), cheap to checkpoint and to ship
between partitions. Recommenders:

- ``following``: the newest posts of the accounts the reader follows (recency);
- ``popular``: the global pool ranked by a hot score, engagement over age;
- ``random``: a seeded draw from the global pool, per reader and step;
- ``similar``: pool posts whose stance is closest to the reader's (attribute similarity).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from megasim.seeding import mix64

RECOMMENDERS = ("following", "popular", "random", "similar")


def post_id(step: int, author: int) -> int:
    """Unique per (step, author), ordered by step; stays below 2**53 (exact in JSON)."""
    return (step << 32) | author


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One post as a reader sees it."""

    post_id: int
    author: int
    step: int
    stance: float
    text: str
    ref: int = 0
    likes: int = 0
    reposts: int = 0

    @classmethod
    def from_record(cls, record: Sequence[Any], likes: int = 0, reposts: int = 0) -> FeedItem:
        pid, author, step, stance, text, ref = record
        return cls(
            int(pid), int(author), int(step), float(stance), str(text), int(ref), likes, reposts
        )


def hot_score(item: FeedItem, step: int) -> float:
    """Engagement over age (a Hacker-News-style decay): newer and more liked ranks higher."""
    age = max(0, step - item.step)
    return float((1.0 + item.likes + 2.0 * item.reposts) / (age + 2.0) ** 1.5)


def newest(items: Iterable[FeedItem], size: int) -> list[FeedItem]:
    """The ``size`` newest items (ties: higher post id first, deterministic)."""
    return sorted(items, key=lambda i: (i.step, i.post_id), reverse=True)[:size]


class Pool:
    """The global pool of recent posts for one step, pre-ranked once per shard."""

    def __init__(self, items: Sequence[FeedItem], step: int) -> None:
        self.items = list(items)
        self.by_hot = sorted(self.items, key=lambda i: (-hot_score(i, step), -i.post_id))
        self.by_stance = sorted(self.items, key=lambda i: (i.stance, i.post_id))
        self._stances = [i.stance for i in self.by_stance]

    def popular(self, reader: int, size: int) -> list[FeedItem]:
        found = []
        for item in self.by_hot:
            if item.author != reader:
                found.append(item)
                if len(found) == size:
                    break
        return found

    def random(self, reader: int, size: int, seed: int) -> list[FeedItem]:
        items = self.items
        if not items:
            return []
        picked: dict[int, FeedItem] = {}
        for i in range(4 * size):  # bounded: a small pool may not fill the feed
            item = items[mix64(seed ^ (reader * 0x9E3779B1 + i)) % len(items)]
            if item.author != reader:
                picked.setdefault(item.post_id, item)
                if len(picked) == size:
                    break
        return list(picked.values())

    def similar(self, reader: int, stance: float, size: int) -> list[FeedItem]:
        """The ``size`` pool posts nearest ``stance``, grown outwards from its position."""
        items, stances = self.by_stance, self._stances
        right = bisect.bisect_left(stances, stance)
        left = right - 1
        found: list[FeedItem] = []
        while len(found) < size and (left >= 0 or right < len(items)):
            take_left = right >= len(items) or (
                left >= 0 and stance - stances[left] <= stances[right] - stance
            )
            if take_left:
                item, left = items[left], left - 1
            else:
                item, right = items[right], right + 1
            if item.author != reader:
                found.append(item)
        return found


def engagement(values: Mapping[str, Any], prefix: str, pid: int) -> int:
    members = values.get(f"{prefix}/{pid}")
    return len(members) if members else 0
