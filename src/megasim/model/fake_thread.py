"""Running an asyncio server on its own event loop in a daemon thread, for sync code.

Tests and benchmarks written as plain functions (``with FakeServer() as server:``) need
the server to keep answering while they block; a background loop gives them that. Kept
apart from the server itself, which only knows its own loop.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any, Self


class ThreadedLifecycle:
    """Adds ``start_in_thread``/``stop_in_thread`` and a sync context manager to a class
    with ``async start()`` and ``async stop()``."""

    port: int
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> Any:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def start_in_thread(self) -> Self:
        """Run the server on its own event loop in a daemon thread (for sync code)."""
        if self._thread is not None:
            raise RuntimeError("the fake server already runs in a thread")
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"fake-server-{self.port}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]
        return self

    def stop_in_thread(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = self._loop = None

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_in_thread()
