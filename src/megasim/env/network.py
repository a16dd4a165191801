"""Social network: a follow graph, posts in keyed state, feeds chosen by a recommender.

The graph (env/network_graph.py) is read-only and built identically in every process;
what agents do to it lives in the KeyedStore, split by key over partitions (in-process
or Ray actors), and is committed at the step boundary in a seeded order:

``a/<agent>``         the agent's newest posts (list, keeps ``author_keep``)
``pool/<b>``          the global pool of recent posts, bucket ``author % pool_buckets``
``likes/<post>``      who liked a post (set: a like is counted once, never lost)
``reposts/<post>``    who reposted it (set)
``comments/<post>``   its newest comments (list, keeps ``comment_keep``)
``follow/<agent>``, ``unfollow/<agent>``   follows added to / removed from the base graph

A post made on one shard is committed with the step and read by its author's followers
on any shard at the next step (pull: readers load their followees' ``a/`` keys). A shard
reads in rounds (``keys_for``, then ``keys_after`` until it returns nothing): first the
readers' follow edits and the pool, then their followees' posts and the pool's likes.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from megasim.agent import Agent
from megasim.env.base import DecisionBatch, Environment, KeyedOp
from megasim.env.network_feed import RECOMMENDERS, FeedItem, Pool, engagement, newest, post_id
from megasim.env.network_graph import SocialGraph
from megasim.env.network_stats import (
    ACTIONS,
    MIDPOINT,
    combine_network,
    pair_partial,
    stance_partial,
)
from megasim.model.parsing import extract_json_object
from megasim.seeding import derive_seed, mix64


@dataclass(frozen=True, slots=True)
class NetworkObservation:
    """What an active agent sees: its feed (newest or best first) and the topic."""

    step: int
    steps: int
    topic: str
    recommender: str
    feed: tuple[FeedItem, ...]
    following: int
    low: float
    high: float


def parse_action(text: str | None) -> tuple[str | None, int | None]:
    """(action, 1-based feed item) from a JSON answer; (None, None) if it names none."""
    obj = extract_json_object(text) if text else None
    if obj is None:
        return None, None
    action = obj.get("action")
    target = obj.get("target")
    action = action.strip().lower() if isinstance(action, str) else None
    item = int(target) if isinstance(target, int | float) and not isinstance(target, bool) else None
    return (action if action in ACTIONS else None), item


class SocialNetwork(Environment):
    """Agents on a follow graph, reading feeds and posting about ``topic``."""

    name = "network"
    keyed = True

    def __init__(
        self,
        graph: SocialGraph,
        ids: npt.NDArray[np.int64],
        steps: int,
        topic: str,
        recommender: str = "following",
        feed_size: int = 10,
        communities: int = 1,
        interventions: Sequence[Mapping[str, Any]] = (),
        seed: int = 0,
        pool_buckets: int = 16,
        pool_size: int = 64,
        author_keep: int = 3,
        comment_keep: int = 16,
    ) -> None:
        super().__init__()
        if recommender not in RECOMMENDERS:
            raise ValueError(f"recommender must be one of {RECOMMENDERS}, not {recommender!r}")
        if graph.agents != ids.size:
            raise ValueError(f"graph has {graph.agents} agents, the population {ids.size}")
        self.graph = graph
        self.ids = np.asarray(ids, dtype=np.int64)
        self._identity = bool(np.array_equal(self.ids, np.arange(self.ids.size)))
        self.state = {
            "step": 0,
            "steps": steps,
            "topic": topic,
            "recommender": recommender,
            "feed_size": feed_size,
            "communities": communities,
            "interventions": [dict(i) for i in interventions],
            "seed": seed,
            "pool_buckets": pool_buckets,
            "pool_size": pool_size,
            "author_keep": author_keep,
            "comment_keep": comment_keep,
            "low": 0.0,
            "high": 100.0,
        }
        self._values: dict[str, Any] = {}
        self._readers: Sequence[Agent] = ()
        self._round = 0
        self._followees: dict[int, list[int]] = {}
        self._feeds: dict[int, tuple[FeedItem, ...]] = {}
        self._own: dict[int, float] = {}
        self._actions: dict[str, int] = {}
        self._recommender = recommender
        self._removed: set[int] = set()
        self._pool = Pool([], 0)
        self._broadcasts: tuple[FeedItem, ...] = ()
        self._seen: list[int] = []
        self._same: list[int] = []
        self._pair_own: list[float] = []  # (own stance, followee's) pairs, for assortativity
        self._pair_theirs: list[float] = []

    # --- ids, follows and interventions ----------------------------------------------------
    def position(self, agent_id: int) -> int:
        return agent_id if self._identity else int(np.searchsorted(self.ids, agent_id))

    def base_followees(self, agent_id: int) -> list[int]:
        row = self.graph.followees(self.position(agent_id))
        found: list[int] = (row if self._identity else self.ids[row]).tolist()
        return found

    def schedule(self, step: int) -> tuple[str, set[int], list[dict[str, Any]]]:
        """(recommender, removed accounts, broadcasts) in force at ``step``: a pure
        function of the configured interventions, so a resumed run sees the same."""
        recommender = str(self.state["recommender"])
        removed: set[int] = set()
        broadcasts = []
        for item in sorted(self.state["interventions"], key=lambda i: int(i["step"])):
            if int(item["step"]) > step:
                break
            kind = item["kind"]
            if kind == "recommender":
                recommender = str(item["recommender"])
            elif kind == "remove":
                removed.add(int(item["account"]))
            elif kind == "broadcast" and int(item["step"]) == step:
                broadcasts.append(item)
        return recommender, removed, broadcasts

    def acting(self, step: int, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_] | None:
        """Shard hook: removed accounts no longer act (None: everyone may)."""
        removed = self.schedule(step)[1]
        if not removed:
            return None
        return ~np.isin(ids, np.fromiter(removed, np.int64, len(removed)))

    # --- shard side: reading keyed state in rounds --------------------------------------------
    def keys_for(self, agents: Sequence[Agent]) -> list[str]:
        self._readers, self._round, self._values = agents, 1, {}
        keys = [f"pool/{b}" for b in range(int(self.state["pool_buckets"]))]
        for agent in agents:
            keys += (f"follow/{agent.id}", f"unfollow/{agent.id}")
        return keys

    def load_keyed(self, values: Mapping[str, Any]) -> None:
        self._values.update(values)

    def keys_after(self) -> list[str]:
        """Keys that depend on what was read: followees' posts, the pool's engagement."""
        if self._round != 1:
            return []
        self._round = 2
        values, authors = self._values, set()
        self._followees = {}
        for agent in self._readers:
            follows = set(self.base_followees(agent.id))
            follows.update(values.get(f"follow/{agent.id}", ()))
            follows.difference_update(values.get(f"unfollow/{agent.id}", ()))
            self._followees[agent.id] = sorted(follows)
            authors.update(follows)
        keys = [f"a/{a}" for a in sorted(authors)]
        for b in range(int(self.state["pool_buckets"])):
            for record in values.get(f"pool/{b}", ()):
                keys += (f"likes/{record[0]}", f"reposts/{record[0]}")
        return keys

    def prepare(self) -> None:
        step = int(self.state["step"]) + 1
        self._recommender, self._removed, broadcasts = self.schedule(step)
        values = self._values
        items = [
            FeedItem.from_record(
                r, engagement(values, "likes", r[0]), engagement(values, "reposts", r[0])
            )
            for b in range(int(self.state["pool_buckets"]))
            for r in values.get(f"pool/{b}", ())
            if int(r[1]) not in self._removed
        ]
        self._pool = Pool(items, step)
        self._broadcasts = tuple(
            FeedItem(
                post_id(step, int(b["account"])),
                int(b["account"]),
                step,
                float(b.get("stance", MIDPOINT)),
                str(b.get("text", "")),
            )
            for b in broadcasts
        )
        self._feeds, self._own, self._actions = {}, {}, {}
        communities = int(self.state["communities"])
        self._seen = [0] * communities
        self._same = [0] * communities
        self._pair_own, self._pair_theirs = [], []

    def _following_feed(self, agent_id: int, size: int) -> list[FeedItem]:
        values = self._values
        items = [
            FeedItem.from_record(r)
            for f in self._followees.get(agent_id, ())
            if f not in self._removed
            for r in values.get(f"a/{f}", ())
        ]
        return newest(items, size)

    def observe(self, agent: Agent) -> NetworkObservation:
        s = self.state
        step, size = int(s["step"]) + 1, int(s["feed_size"])
        own = float(getattr(agent, "stance", MIDPOINT))
        kind = self._recommender
        if kind == "following":
            feed = self._following_feed(agent.id, size)
        elif kind == "popular":
            feed = self._pool.popular(agent.id, size)
        elif kind == "random":
            feed = self._pool.random(agent.id, size, derive_seed(int(s["seed"]), step))
        else:
            feed = self._pool.similar(agent.id, own, size)
        items = self._broadcasts + tuple(feed)
        self._feeds[agent.id], self._own[agent.id] = items, own
        c = agent.group if 0 <= agent.group < len(self._seen) else 0
        self._seen[c] += len(items)
        self._same[c] += sum(1 for i in items if (i.stance >= MIDPOINT) == (own >= MIDPOINT))
        for f in self._followees.get(agent.id, ()):  # own stance vs followees' latest post
            posts = self._values.get(f"a/{f}")
            if posts:
                self._pair_own.append(own)
                self._pair_theirs.append(float(posts[-1][3]))
        return NetworkObservation(
            step,
            int(s["steps"]),
            str(s["topic"]),
            kind,
            items,
            len(self._followees.get(agent.id, ())),
            float(s["low"]),
            float(s["high"]),
        )

    # --- shard side: what decisions change -----------------------------------------------
    def fallback_action(self, step: int, agent: int, feed: Sequence[FeedItem]) -> tuple[str, int]:
        """A seeded action for answers that name none (the surrogate's): post 40 %, like
        25 %, repost 10 %, comment 10 %, follow 5 %, unfollow 5 %, nothing 5 %; the target
        is the feed item whose stance is nearest (farthest, to unfollow) the agent's."""
        u = (mix64(derive_seed(int(self.state["seed"]), step, agent, 7)) >> 11) / float(1 << 53)
        cuts = (0.40, 0.65, 0.75, 0.85, 0.90, 0.95, 1.01)
        action = ACTIONS[next(i for i, c in enumerate(cuts) if u < c)]
        own = self._own.get(agent, MIDPOINT)
        if not feed or action == "post":
            return ("post" if action != "none" else "none"), 0
        distance = [abs(i.stance - own) for i in feed]
        best = (max if action == "unfollow" else min)(range(len(feed)), key=distance.__getitem__)
        return action, best + 1

    def writes(self, step: int, decisions: pa.Table) -> list[KeyedOp]:
        s = self.state
        seed, buckets = int(s["seed"]), int(s["pool_buckets"])
        base = derive_seed(seed, step)
        ops: list[KeyedOp] = []
        pool: dict[int, list[tuple[int, list[Any]]]] = {}
        comments: dict[int, list[tuple[int, int, list[Any]]]] = {}
        rows = decisions.select(["agent_id", "value", "valid", "raw_text", "text"])
        for agent, value, valid, raw, text in zip(
            *(rows.column(c).to_pylist() for c in rows.column_names), strict=True
        ):
            if not valid:
                continue
            order = derive_seed(base, agent)
            feed = self._feeds.get(agent, ())
            action, item = parse_action(raw)
            if action is None:
                action, item = self.fallback_action(step, agent, feed)
            target = feed[item - 1] if item is not None and 1 <= item <= len(feed) else None
            if action != "post" and action != "none" and target is None:
                action = "none"  # names no item of its feed: nothing to act on
            self._actions[action] = self._actions.get(action, 0) + 1
            message = text or f"My stance is now {value:g}."
            if action in ("post", "repost"):
                record = [post_id(step, agent), agent, step, float(value), message, 0]
                if action == "repost" and target is not None:
                    record = [
                        post_id(step, agent),
                        agent,
                        step,
                        target.stance,
                        target.text,
                        target.post_id,
                    ]
                    ops.append(KeyedOp(f"reposts/{target.post_id}", order, 1, "add", agent))
                ops.append(KeyedOp(f"a/{agent}", order, 0, "append", record, int(s["author_keep"])))
                pool.setdefault(agent % buckets, []).append((order, record))
            elif action == "like" and target is not None:
                ops.append(KeyedOp(f"likes/{target.post_id}", order, 0, "add", agent))
            elif action == "comment" and target is not None:
                comments.setdefault(target.post_id, []).append(
                    (order, agent, [agent, step, message])
                )
            elif action in ("follow", "unfollow") and target is not None and target.author != agent:
                add, drop = ("follow", "unfollow") if action == "follow" else ("unfollow", "follow")
                ops.append(KeyedOp(f"{add}/{agent}", order, 0, "add", target.author))
                ops.append(KeyedOp(f"{drop}/{agent}", order, 1, "discard", target.author))
        keep = int(s["pool_size"])
        for bucket, posts in pool.items():  # only what can survive the commit leaves
            for order, record in heapq.nlargest(keep, posts, key=lambda p: p[0]):
                ops.append(KeyedOp(f"pool/{bucket}", order, 0, "append", record, keep))
        keep = int(s["comment_keep"])
        for pid, entries in comments.items():
            for order, _, comment in heapq.nlargest(keep, entries, key=lambda e: e[0]):
                ops.append(KeyedOp(f"comments/{pid}", order, 0, "append", comment, keep))
        return ops

    def reduce(self, batch: DecisionBatch) -> dict[str, Any]:
        s = self.state
        partial = stance_partial(
            batch.values, batch.groups, int(s["communities"]), float(s["low"]), float(s["high"])
        )
        partial.update(
            seen=list(self._seen),
            same_side=list(self._same),
            pairs=pair_partial(self._pair_own, self._pair_theirs),
            actions=dict(self._actions),
        )
        return partial

    # --- driver side -------------------------------------------------------------------------
    def combine(self, partials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return combine_network(partials, int(self.state["communities"]))
