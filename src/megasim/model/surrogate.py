"""Surrogate model: a labelled, seeded, non-LLM stand-in for scale tests and benchmarks.

In the guessing game it imitates level-k reasoning so that prompt variants and
personas change the answers: the deeper the variant's reasoning (P1 < P2 < P3 < P4),
the more iterations of ``ratio * x + offset`` from the anchor (the middle of the
range, or last round's winning number). In chat rooms (``meta["task"] == "opinion"``)
it moves the agent's opinion part of the way towards the mean of the posts it read,
with seeded openness and noise (a DeGroot-style update). Other scenarios register their
own rule per task (model/stand_in.py). Its output is prefixed
``[surrogate]`` and must never be reported as LLM behaviour.
"""

from __future__ import annotations

import asyncio

from megasim.model.base import ChatRequest, ChatResponse
from megasim.model.stand_in import stand_in_rule
from megasim.seeding import mix64

VARIANT_DEPTH = {"P1": 0.6, "P2": 1.2, "P3": 2.0, "P4": 2.5, "P5": 1.0}
EDUCATION_DEPTH = {"phd": 1.0, "master": 0.6, "bachelor": 0.3, "elementary school": -0.3}
LABEL = "[surrogate]"
BATCH_WINDOW_S = 0.005


def _fire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_TO_UNIT = 1.0 / (1 << 32)


class SurrogateModel:
    """Fast stand-in. ``latency_s`` > 0 emulates a model server's response time."""

    def __init__(self, name: str = "surrogate", latency_s: float = 0.0) -> None:
        self.name = name
        self.latency_s = latency_s
        self.immediate = latency_s <= 0
        self.task_free = True  # awaits only a shared timer future, never needs a Task
        self._batch: asyncio.Future[None] | None = None
        self._batch_opened = 0.0

    def _wait(self) -> asyncio.Future[None]:
        """A timer future shared by the calls of one ``BATCH_WINDOW_S`` window; it fires
        ``latency_s`` after the window closes, so each call waits between ``latency_s``
        and ``latency_s + BATCH_WINDOW_S``. One timer per window instead of one per call
        is what lets a million emulated calls wait concurrently."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        batch = self._batch
        if batch is None or batch.done() or now - self._batch_opened > BATCH_WINDOW_S:
            batch = self._batch = loop.create_future()
            self._batch_opened = now
            loop.call_at(now + BATCH_WINDOW_S + self.latency_s, _fire, batch)
        return batch

    def answer(self, request: ChatRequest) -> float:
        """The guess this request gets; a pure function of the request's seed and meta."""
        meta = request.meta
        bits = mix64(request.seed or 0)
        u_depth = (bits & 0xFFFFFFFF) * _TO_UNIT
        u_noise = (bits >> 32) * _TO_UNIT
        depth = VARIANT_DEPTH.get(meta.get("variant", "P1"), 1.0)
        persona = request.persona
        if persona is not None:
            education = persona.get("education")
            if isinstance(education, str):
                depth += EDUCATION_DEPTH.get(education.lower(), 0.0)
        depth = max(0.0, depth + 2.0 * u_depth - 1.0)
        low = meta.get("low", 0.0)
        high = meta.get("high", 100.0)
        previous = meta.get("previous_winner")
        guess = previous if previous is not None else (low + high) / 2
        ratio = meta.get("ratio", 2 / 3)
        offset = meta.get("offset", 0.0)
        whole = int(depth)
        for _ in range(whole):
            guess = ratio * guess + offset
        guess += (depth - whole) * (ratio * guess + offset - guess)
        guess *= 0.85 + 0.3 * u_noise  # individual noise, +-15%
        return round(float(min(high, max(low, guess))), 1)

    def opinion(self, request: ChatRequest) -> float:
        """The opinion this request gets; a pure function of the request's seed and meta."""
        meta = request.meta
        bits = mix64(request.seed or 0)
        openness = 0.2 + 0.6 * (bits & 0xFFFFFFFF) * _TO_UNIT  # share of the gap closed
        noise = ((bits >> 32) * _TO_UNIT * 2.0 - 1.0) * 3.0
        low, high = meta.get("low", 0.0), meta.get("high", 100.0)
        own = float(meta.get("own", (low + high) / 2))
        peers = meta.get("peers")
        moved = own + (openness * (float(peers) - own) if peers is not None else 0.0)
        return round(float(min(high, max(low, moved + noise))), 1)

    def inquiry(self, request: ChatRequest) -> str:
        """A studio interview or survey answer: a seeded pick, labelled, never an opinion."""
        meta = request.meta
        u = (mix64(request.seed or 0) & 0xFFFFFFFF) * _TO_UNIT
        options = meta.get("options") or []
        if options:
            return f'{LABEL} {{"answer": "{options[int(u * len(options))]}"}}'
        low, high = meta.get("low"), meta.get("high")
        if low is not None and high is not None:
            return f'{LABEL} {{"answer": {round(low + u * (high - low), 1)}}}'
        return f"{LABEL} A stand-in model cannot answer interviews; configure an LLM."

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self.latency_s > 0:
            await self._wait()
        task = request.meta.get("task")
        if task in ("interview", "survey"):
            return ChatResponse(self.inquiry(request), self.name, 0, 0, self.latency_s)
        rule = stand_in_rule(task)
        if rule is not None:  # a scenario's own rule (model/stand_in.py)
            text = f"{LABEL} {rule(request)}"
        elif task == "opinion":
            value = self.opinion(request)
            message = f"{LABEL} I now rate it {value:g}."
            text = f'{LABEL} {{"opinion": {value}, "message": "{message}"}}'
        else:
            text = f'{LABEL} {{"guess": {self.answer(request)}}}'
        return ChatResponse(text, self.name, 0, 0, self.latency_s)

    async def aclose(self) -> None:
        return None
