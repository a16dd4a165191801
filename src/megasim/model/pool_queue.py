"""Callers waiting for an endpoint slot of a pool, oldest first, and when they give up.

``EndpointPool`` decides *which* endpoint may take a call (``pick``); this queue decides
*who* gets the next free slot (FIFO, so no caller starves under saturation) and fails
waiters once every endpoint has been dead for ``timeout_s``. Apart from the pool so that
each file holds one concept: choosing endpoints and their health there, waiting here.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from megasim.model.endpoint import Endpoint


class PoolUnavailableError(Exception):
    """No live endpoint within the pool's ``unavailable_timeout_s`` (or the pool closed)."""


class _Waiter:
    __slots__ = ("avoid", "future", "since")

    def __init__(
        self, future: asyncio.Future[Endpoint], avoid: Endpoint | None, since: float
    ) -> None:
        self.future = future
        self.avoid = avoid
        self.since = since


class WaitQueue:
    """FIFO of callers waiting for a slot; ``pick(avoid)`` names a free endpoint or None,
    ``give_back(endpoint)`` returns a slot handed to a caller cancelled in the same tick,
    ``reason()`` says why requests fail when every endpoint stayed dead."""

    def __init__(
        self,
        pick: Callable[[Endpoint | None], Endpoint | None],
        give_back: Callable[[Endpoint], None],
        reason: Callable[[], str],
        timeout_s: float,
    ) -> None:
        self._pick = pick
        self._give_back = give_back
        self._reason = reason
        self.timeout_s = timeout_s
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._all_dead_since: float | None = None

    def __bool__(self) -> bool:
        """Whether anyone may be waiting (cancelled waiters are dropped lazily)."""
        return bool(self._waiters)

    def pending(self) -> int:
        """Callers still waiting for a slot."""
        return sum(1 for w in self._waiters if not w.future.done())

    async def wait(self, avoid: Endpoint | None) -> Endpoint:
        """Wait in line for an endpoint slot (already counted in its ``in_flight``)."""
        future: asyncio.Future[Endpoint] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(future, avoid, time.monotonic()))
        self._arm_timer()
        try:
            return await future
        except asyncio.CancelledError:
            # handed a slot in the same tick as the cancellation: give it back
            if future.done() and not future.cancelled() and future.exception() is None:
                self._give_back(future.result())
            raise

    def dispatch(self) -> None:
        """Hand free slots to the oldest waiters."""
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if waiter.future.done():  # cancelled or timed out
                waiters.popleft()
                continue
            endpoint = self._pick(waiter.avoid)
            if endpoint is None:
                return
            waiters.popleft()
            endpoint.in_flight += 1
            waiter.future.set_result(endpoint)

    def all_dead(self) -> None:
        """The last live endpoint died: start the clock on everyone waiting."""
        self._all_dead_since = time.monotonic()
        self._arm_timer()

    def revived(self) -> None:
        """An endpoint is back: nobody times out; the caller then dispatches."""
        self._all_dead_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self, message: str) -> None:
        """Fail every waiter with ``message`` (the pool is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(PoolUnavailableError(message))

    def _arm_timer(self) -> None:
        """While every endpoint is dead, fail waiters ``timeout_s`` after they started
        waiting (or after the last endpoint died, if later)."""
        dead_since = self._all_dead_since
        if self._timer is not None or dead_since is None:
            return
        for waiter in self._waiters:
            if not waiter.future.done():
                deadline = max(waiter.since, dead_since) + self.timeout_s
                delay = max(0.0, deadline - time.monotonic())
                self._timer = asyncio.get_running_loop().call_later(delay, self._expire)
                return

    def _expire(self) -> None:
        self._timer = None
        dead_since = self._all_dead_since
        if dead_since is None:
            return
        now = time.monotonic()
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if waiter.future.done():
                waiters.popleft()
                continue
            if max(waiter.since, dead_since) + self.timeout_s > now + 1e-3:
                break
            waiters.popleft()
            waiter.future.set_exception(PoolUnavailableError(self._reason()))
        self._arm_timer()
