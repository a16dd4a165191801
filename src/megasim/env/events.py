"""Firing environment events without waiting for their listeners.

``Environment.emit`` awaits every listener, and ``Simulation.step`` awaits
``env.apply``: a listener that writes to a slow service would hold up the whole run.
So environments announce events with ``Environment.fire`` (the default ``apply`` fires
``step_end`` so), which hands them to the tree's ``ListenerTasks``: ``emit`` (this
environment's listeners, then bubbling to the parents' as usual) starts in a background
task and ``fire`` returns at once. Consequences, on purpose:

- a slow listener never delays a step; listeners of step n may still run during step
  n + 1 (their payloads are immutable copies, so they see step n's data);
- events of one environment start in the order fired, but listeners are not serialised;
- a failing listener is logged, kept in ``errors`` and passed to ``on_error`` (a run
  writes a ``listener_failed`` event); it never fails the run;
- ``await env.drain()`` waits for everything fired so far in the tree (the run does it
  after the scenario's loop, also when it stops or fails, for at most a minute, so no
  listener is cut off when the run's event loop closes).

Nothing is computed for an event that nobody listens to (``listened``): the grid's
``in_range`` pairs cost a pass over the movers' neighbourhoods, skipped when unheard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from megasim.env.base import Environment

log = logging.getLogger(__name__)


def listened(env: Environment, event: str) -> bool:
    """Whether ``event`` fired on ``env`` reaches any listener (its own or a parent's)."""
    node: Environment | None = env
    while node is not None:
        listeners = node._listeners
        if listeners.get(event) or listeners.get("*"):
            return True
        node = node.parent
    return False


class ListenerTasks:
    """Background emits of one environment tree; see the module doc."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.on_error: Callable[[BaseException], None] | None = None  # the run logs them

    def fire(self, env: Environment, event: str, payload: Mapping[str, Any]) -> bool:
        """Start ``env.emit(event, payload)`` in the background; False if nobody listens."""
        if not listened(env, event):
            return False
        task = asyncio.get_running_loop().create_task(env.emit(event, payload))
        self._pending.add(task)
        task.add_done_callback(self._settled)
        return True

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.errors.append(exc)
            log.warning("an environment event listener failed: %r", exc)
            if self.on_error is not None:
                self.on_error(exc)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Wait until every listener fired so far (and any they fired) has finished."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
