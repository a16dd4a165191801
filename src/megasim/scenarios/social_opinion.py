"""Scenario ``social_opinion``: stances spreading over a social network with feeds.

Agents with personas hold a stance (0-100) on ``social.topic``, read a feed picked by a
recommender from the posts of a follow graph (env/network.py), and each active step make
one model call that updates their stance and does one thing (post, like, repost,
comment, follow, unfollow, nothing). Per step: stance distribution, polarisation
(variance, bimodality coefficient), stance assortativity over follow ties, echo chambers
per community (the population's groups), action counts. Interventions are scheduled by
step in the config.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from megasim.agent import Agent, PersonaTable
from megasim.env.group_stats import group_sizes
from megasim.env.network import SocialNetwork
from megasim.env.network_generators import block_model, scale_free, small_world
from megasim.env.network_graph import SocialGraph, read_edge_list
from megasim.model.base import ModelClient
from megasim.population.columns import numeric_column_problems
from megasim.scenarios.base import Scenario
from megasim.scenarios.social_opinion_agent import HIGH, LOW, STANCE_COLUMN, SocialAgent, SocialBook
from megasim.scenarios.social_opinion_settings import GraphSettings, SocialSettings

if TYPE_CHECKING:
    from rich.console import Console

    from megasim.config import SimulationConfig

_GRAPHS: dict[tuple[Any, ...], SocialGraph] = {}  # built once per process (shards share it)


def build_graph(settings: GraphSettings, seed: int, population: pa.Table) -> SocialGraph:
    """The run's follow graph over the population's rows (cached by its inputs)."""
    ids = population.column("agent_id").to_numpy().astype(np.int64)
    blocks = None
    if settings.kind == "block_model":
        if settings.attribute not in population.column_names:
            raise ValueError(f"social.graph.attribute: no population column {settings.attribute!r}")
        column = population.column(settings.attribute)
        blocks = pc.dictionary_encode(column).combine_chunks().indices.to_numpy(False)
    digest = hashlib.blake2b(ids.tobytes(), digest_size=8)
    if blocks is not None:
        digest.update(np.ascontiguousarray(blocks).tobytes())
    key = (settings.model_dump_json(), seed, digest.hexdigest())
    graph = _GRAPHS.get(key)
    if graph is None:
        n = int(ids.size)
        if settings.kind == "scale_free":
            graph = scale_free(n, settings.degree, seed, settings.mutual)
        elif settings.kind == "small_world":
            graph = small_world(n, settings.degree, settings.rewire, seed)
        elif settings.kind == "block_model":
            assert blocks is not None
            graph = block_model(blocks, settings.degree, settings.homophily, seed)
        else:
            assert settings.path is not None
            order = np.argsort(ids)
            src, dst = read_edge_list(settings.path, ids[order])
            graph = SocialGraph.from_edges(n, order[src], order[dst], settings.mutual)
        _GRAPHS.clear()  # one run per process at a time: keep memory to one graph
        _GRAPHS[key] = graph
    return graph


def social_settings(config: SimulationConfig) -> SocialSettings:
    settings = getattr(config, "social", None)
    return settings if isinstance(settings, SocialSettings) else SocialSettings()


class SocialOpinion(Scenario):
    """``scenario: social_opinion`` with its ``social:`` section."""

    name: ClassVar[str] = "social_opinion"
    section: ClassVar[str | None] = "social"
    settings_model: ClassVar[type[SocialSettings]] = SocialSettings
    headline: ClassVar[tuple[str, str] | None] = ("bimodality", "bimodality")
    keyed_state: ClassVar[bool] = True  # posts, likes and follows: keyed partitions

    def network(
        self, settings: SocialSettings, seed: int, steps: int, population: pa.Table
    ) -> SocialNetwork:
        """The environment for ``population`` (also usable without a full run config)."""
        ids = population.column("agent_id").to_numpy().astype(np.int64)
        order = np.argsort(ids)
        return SocialNetwork(
            build_graph(settings.graph, seed, population.take(order)),
            ids[order],
            steps=steps,
            topic=settings.topic,
            recommender=settings.recommender,
            feed_size=settings.feed_size,
            communities=len(group_sizes(population)),
            interventions=[i.model_dump() for i in settings.interventions],
            seed=seed,
            pool_buckets=settings.pool_buckets,
            pool_size=settings.pool_size,
        )

    def agents(
        self,
        settings: SocialSettings,
        seed: int,
        population: pa.Table,
        models: Mapping[str, ModelClient],
    ) -> list[Agent]:
        personas = PersonaTable(population)
        book = SocialBook(seed, settings.max_tokens)
        ids = population.column("agent_id").to_pylist()
        groups = population.column("group").to_pylist()
        names = population.column("model").to_pylist()
        return [
            SocialAgent(agent_id, row, personas, models[name], group, book)
            for row, (agent_id, group, name) in enumerate(zip(ids, groups, names, strict=True))
        ]

    def build_env(self, config: SimulationConfig, population: pa.Table) -> SocialNetwork:
        env = self.network(social_settings(config), config.seed, config.rounds, population)
        return env

    def build_agents(
        self, config: SimulationConfig, population: pa.Table, models: Mapping[str, ModelClient]
    ) -> list[Agent]:
        return self.agents(social_settings(config), config.seed, population, models)

    def check_population(self, population: pa.Table) -> list[str]:
        if STANCE_COLUMN not in population.column_names:
            return []
        return numeric_column_problems(population, STANCE_COLUMN, LOW, HIGH)

    def report(self, run_dir: Path, out_dir: Path, console: Console) -> list[Path]:
        from megasim.scenarios.social_opinion_report import social_report

        return social_report(self, run_dir, out_dir, console)
