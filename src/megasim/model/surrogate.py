"""Surrogate model: a labelled, seeded, non-LLM stand-in for scale tests and benchmarks.

It imitates level-k reasoning so that prompt variants and personas change the
answers: the deeper the variant's reasoning (P1 < P2 < P3 < P4), the more
iterations of ``ratio * x`` from the anchor (50, or last round's winning number).
Its output is prefixed ``[surrogate]`` and must never be reported as LLM behaviour.
"""

from __future__ import annotations

import asyncio

from megasim.model.base import ChatRequest, ChatResponse
from megasim.seeding import unit_float

_VARIANT_DEPTH = {"P1": 0.6, "P2": 1.2, "P3": 2.0, "P4": 2.5, "P5": 1.0}
_EDUCATION_DEPTH = {"phd": 1.0, "master": 0.6, "bachelor": 0.3, "elementary school": -0.3}
LABEL = "[surrogate]"


class SurrogateModel:
    """Fast stand-in. ``latency_s`` > 0 emulates a model server's response time."""

    def __init__(self, name: str = "surrogate", latency_s: float = 0.0) -> None:
        self.name = name
        self.latency_s = latency_s
        self.immediate = latency_s <= 0

    def answer(self, request: ChatRequest) -> float:
        """The guess this request gets; pure function of the request's seed and meta."""
        meta = request.meta
        seed = request.seed or 0
        depth = _VARIANT_DEPTH.get(str(meta.get("variant", "P1")), 1.0)
        persona = meta.get("persona")
        education = persona.get("education") if persona is not None else None
        if isinstance(education, str):
            depth += _EDUCATION_DEPTH.get(education.lower(), 0.0)
        depth = max(0.0, depth + 2.0 * (unit_float(seed, 1) - 0.5))
        low = float(meta.get("low", 0.0))
        high = float(meta.get("high", 100.0))
        previous = meta.get("previous_winner")
        anchor = float(previous) if previous is not None else (low + high) / 2
        ratio = float(meta.get("ratio", 2 / 3))
        offset = float(meta.get("offset", 0.0))
        guess = anchor
        for _ in range(int(depth)):
            guess = ratio * guess + offset
        guess += (depth - int(depth)) * (ratio * guess + offset - guess)
        guess *= 1.0 + 0.3 * (unit_float(seed, 2) - 0.5)  # individual noise
        return round(min(high, max(low, guess)), 1)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        text = f'{LABEL} {{"guess": {self.answer(request)}}}'
        return ChatResponse(text=text, model=self.name, latency_s=self.latency_s)

    async def aclose(self) -> None:
        return None
