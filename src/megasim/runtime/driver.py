"""Drive many agent coroutines without creating an asyncio Task for each.

A Task costs several microseconds and a few hundred bytes, and ``gather`` over a
million of them costs 10-12 s on two cores. Coroutines whose awaits are plain
asyncio futures (timers, a model's batched response) can be stepped directly: the
first ``send`` runs inline, and when the coroutine suspends on a future it is resumed
from that future's done-callback, exactly as a Task would, minus the Task. Code that
needs ``asyncio.current_task()`` (httpx, anyio) must not be driven this way; models say
so with ``task_free = False`` and their agents get real tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")
DoneFn = Callable[[int, Any], None]  # (index, result or exception)


class TaskFreeDriver(Generic[T]):
    """Steps coroutines by index; ``on_done(index, result_or_exception)`` reports each end."""

    def __init__(self, on_done: DoneFn) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_done = on_done
        self.suspended = 0  # coroutines waiting on a future right now
        self.ever_suspended = 0
        self._idle: asyncio.Future[None] | None = None
        # pending future -> the coroutines suspended on it, in the order they suspended
        self._waiting: dict[asyncio.Future[Any], list[tuple[int, Coroutine[Any, Any, T]]]] = {}

    def start(self, index: int, coro: Coroutine[Any, Any, T]) -> None:
        if not self._step(index, coro):
            self.suspended += 1
            self.ever_suspended += 1

    def resume_from(self, index: int, coro: Coroutine[Any, Any, T], yielded: Any) -> None:
        """Adopt a coroutine the caller already sent into once and that yielded ``yielded``."""
        if not self._wait_on(index, coro, yielded):
            self.suspended += 1
            self.ever_suspended += 1

    async def wait(self) -> None:
        """Return once every started coroutine has finished."""
        if self.suspended:
            self._idle = self._loop.create_future()
            await self._idle

    def _step(self, index: int, coro: Coroutine[Any, Any, T]) -> bool:
        """Advance ``coro``; True when it finished (result or exception reported)."""
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self._on_done(index, stop.value)
            return True
        except (Exception, asyncio.CancelledError) as exc:  # recorded, never left hanging
            self._on_done(index, exc)
            return True
        return self._wait_on(index, coro, yielded)

    def _wait_on(self, index: int, coro: Coroutine[Any, Any, T], yielded: Any) -> bool:
        """Arrange for ``coro`` to resume when ``yielded`` completes; True if it ended."""
        if yielded is None:  # a bare yield, as in asyncio.sleep(0)
            self._loop.call_soon(self._resume, index, coro)
        elif getattr(yielded, "_asyncio_future_blocking", None) is not None:
            yielded._asyncio_future_blocking = False  # as Task.__step does
            waiters = self._waiting.get(yielded)
            if waiters is None:
                waiters = self._waiting[yielded] = []
                yielded.add_done_callback(self._wake)
            waiters.append((index, coro))
        else:
            coro.close()
            self._on_done(index, TypeError(f"awaited a non-asyncio object: {yielded!r}"))
            return True
        return False

    def _wake(self, future: asyncio.Future[Any]) -> None:
        """Resume every coroutine that suspended on ``future``."""
        waiters = self._waiting.pop(future, [])
        waiters.reverse()
        try:
            while waiters:  # popped one by one: a finished coroutine is freed at once
                index, coro = waiters.pop()
                self._resume(index, coro)
        finally:  # if one resumption raised, the others still run, each in its own callback
            for index, coro in reversed(waiters):
                self._loop.call_soon(self._resume, index, coro)

    def _resume(self, index: int, coro: Coroutine[Any, Any, T], _: object = None) -> None:
        if self._step(index, coro):
            self.suspended -= 1
            if self.suspended == 0 and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
