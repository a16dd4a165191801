"""RunMonitor: the driver's side of the run-directory bus (``store/bus.py``).

It publishes ``status.json`` about once a second (step progress, shard health, model calls
in flight) and acts on commands posted in ``control/``: pause and stop take effect at the
next step boundary (after the previous step's checkpoint), so a stopped run resumes with
``megasim resume`` exactly where it stopped; restart a shard asks the runtime to replace
it. Every command is logged in events.jsonl with its origin and time.

Progress callbacks also write the status (throttled): a shard stepping a million
immediate agents never yields to the event loop, so a timer task alone would go quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import psutil

from megasim.runtime.base import ProgressFn, Runtime
from megasim.simulation import StepOutcome
from megasim.store.bus import HEARTBEAT_S, Command, take_commands, write_status
from megasim.store.run_dir import RunDirectory


class StopRequestedError(Exception):
    """A stop command ended the run cleanly at a step boundary (resumable)."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped after step {step}")
        self.step = step


class RunMonitor:
    """Heartbeat, progress and commands of one driver; used by ``run._execute``."""

    def __init__(
        self,
        run_dir: RunDirectory,
        runtime: Runtime,
        agents: int,
        steps_total: int,
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        self.run_dir = run_dir
        self.runtime = runtime
        self.agents = agents
        self.steps_total = steps_total
        self.interval_s = interval_s
        self.state = "starting"
        self.paused = False
        self.stop_requested = False
        self.step = 0  # the step running now, or the last one done
        self.steps_done = 0
        self.step_started: float | None = None
        self.done_by_shard: dict[int, int] = {}
        self.started = time.time()
        self._last_write = 0.0
        self.publish_error: str | None = None  # the last failed status write, if any
        self.pending_restarts: list[tuple[int, dict[str, Any]]] = []  # done at a boundary
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._process = psutil.Process()
        self._process.cpu_percent()  # prime the counter

    # --- lifecycle --------------------------------------------------------------------
    async def start(self, steps_done: int = 0) -> None:
        self.steps_done = self.step = steps_done
        for stale in take_commands(self.run_dir.path):  # posted to a driver that died
            self.run_dir.append_event(
                "command_dropped",
                action=stale.action,
                origin=stale.origin,
                requested=stale.time,
                reason="posted before this driver started",
            )
        self.state = "running"
        self.publish(force=True)
        self._task = asyncio.create_task(self._loop())

    async def close(self, final_state: str) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.state = final_state
        self.publish(force=True)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await self.poll()
            self.publish()

    # --- hooks into the simulation ------------------------------------------------------
    def wrap_progress(self, inner: ProgressFn | None) -> ProgressFn:
        def progress(shard: int, done: int) -> None:
            self.done_by_shard[shard] = done
            self.publish()
            if inner is not None:
                inner(shard, done)

        return progress

    async def before_step(self, step: int) -> None:
        """The step boundary: honour pause and stop before ``step`` begins."""
        await self.poll()
        await self._restart_pending()
        announced = False
        while self.paused and not self.stop_requested:
            if not announced:
                self.state = "paused"
                self.run_dir.append_event("paused", before_step=step)
                self.publish(force=True)
                announced = True
            self._wake.set()
            await asyncio.sleep(min(self.interval_s, 0.2))
            await self.poll()
        if announced and not self.stop_requested:
            self.run_dir.append_event("unpaused", before_step=step)
        if self.stop_requested:
            self.state = "stopped"
            raise StopRequestedError(step - 1)
        self.state = "running"
        self.step = step
        self.step_started = time.time()
        self.done_by_shard.clear()
        self.publish(force=True)

    def after_step(self, outcome: StepOutcome) -> None:
        self.steps_done = outcome.step
        self.step_started = None
        self.done_by_shard.clear()
        self.publish(force=True)

    # --- commands ---------------------------------------------------------------------
    async def poll(self) -> None:
        for command in take_commands(self.run_dir.path):
            await self._apply(command)

    async def _apply(self, command: Command) -> None:
        log: dict[str, Any] = {"origin": command.origin, "requested": command.time}
        if command.action == "pause":
            self.paused = True
            self.run_dir.append_event("pause_requested", **log)
        elif command.action == "resume":
            self.paused = False
            self.run_dir.append_event("resume_requested", **log)
        elif command.action == "stop":
            self.stop_requested = True
            self.state = "stopping"
            self.run_dir.append_event("stop_requested", **log)
        elif command.action == "restart_shard":
            await self._restart_shard(command, log)
        self.publish(force=True)

    async def _restart_shard(self, command: Command, log: dict[str, Any]) -> None:
        """Queue the restart for the next step boundary: killing an actor while the step's
        checkpoint is being written would fail the run instead of rerunning a step."""
        restart: Callable[[int], Any] | None = getattr(self.runtime, "restart_shard", None)
        shard = command.args.get("shard")
        if restart is None or not isinstance(shard, int):
            reason = "this runtime cannot restart shards" if restart is None else "no shard given"
            self.run_dir.append_event(
                "command_refused", action=command.action, reason=reason, **log
            )
            return
        self.pending_restarts.append((shard, log))
        self.run_dir.append_event("shard_restart_requested", shard=shard, **log)

    async def _restart_pending(self) -> None:
        restart: Callable[[int], Any] | None = getattr(self.runtime, "restart_shard", None)
        while self.pending_restarts and restart is not None:
            shard, log = self.pending_restarts.pop(0)
            try:
                await restart(shard)
            except (ValueError, IndexError) as exc:
                self.run_dir.append_event(
                    "command_refused", action="restart_shard", reason=str(exc), **log
                )

    # --- status -----------------------------------------------------------------------
    def publish(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_write < self.interval_s:
            return
        self._last_write = now
        try:
            write_status(self.run_dir.path, self.status(now))
        except OSError as exc:  # telemetry must never end a run; its own writes will
            self.publish_error = f"{type(exc).__name__}: {exc}"  # report a full disk

    def status(self, now: float | None = None) -> dict[str, Any]:
        """The live status document (see docs/studio.md for its fields)."""
        now = time.time() if now is None else now
        health_of = getattr(self.runtime, "shard_health", None)
        shards: list[dict[str, Any]] = health_of() if callable(health_of) else []
        for shard in shards:
            done = self.done_by_shard.get(int(shard["shard"]))
            if done is not None and self.step_started is not None:
                shard["done"] = done
        partitions_of = getattr(self.runtime, "partition_health", None)
        return {
            "run_id": self.run_dir.path.name,
            "state": self.state,
            "time": now,
            "started": self.started,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "driver_cpu_percent": self._process.cpu_percent(),
            "driver_rss_mb": round(self._process.memory_info().rss / 2**20, 1),
            "agents": self.agents,
            "step": self.step,
            "steps_done": self.steps_done,
            "steps_total": self.steps_total,
            "in_step": self.step_started is not None,
            "step_started": self.step_started,
            "decisions_done": sum(self.done_by_shard.values()) if self.step_started else 0,
            "paused": self.paused,
            "stop_requested": self.stop_requested,
            "shards": shards,
            "partitions": partitions_of() if callable(partitions_of) else [],
        }
