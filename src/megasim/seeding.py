"""Seed derivation: every random draw depends only on (run seed, agent, step).

That is what makes local and distributed runs with any number of shards agree.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def derive_seed(seed: int, *keys: int) -> int:
    """A non-negative 63-bit seed for the stream identified by ``keys`` under ``seed``."""
    x = mix64(seed & _MASK)
    for key in keys:
        x = mix64(x ^ (key & _MASK))
    return x >> 1


def unit_float(seed: int, salt: int = 0) -> float:
    """A uniform float in [0, 1) determined by ``seed`` and ``salt``."""
    return (mix64(seed ^ (salt * 0xD1B54A32D192ED03 & _MASK)) >> 11) * (1.0 / (1 << 53))


class CallSeeds:
    """Seeds of agents' model calls: a function of (run seed, step, agent) only, never of
    sharding or timing. The per-step base is cached: it is asked for a million times."""

    __slots__ = ("_bases", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._bases: dict[int, int] = {}

    def __call__(self, agent_id: int, step: int) -> int:
        base = self._bases.get(step)
        if base is None:
            base = self._bases[step] = derive_seed(self.seed, step)
        return mix64(base ^ agent_id) >> 1
