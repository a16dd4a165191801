"""TaskFreeDriver: coroutines stepped from future callbacks finish exactly once each."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from megasim.runtime.driver import TaskFreeDriver


class Weird:
    def __await__(self) -> Any:
        yield "not a future"


async def worker(i: int, shared: asyncio.Future[None]) -> int:
    if i % 5 == 0:
        return i  # finishes inline
    if i % 5 == 1:
        await asyncio.sleep(0)  # bare yield
        await asyncio.sleep(0.01)
        return i
    if i % 5 == 2:
        await shared
        return i * 10
    if i % 5 == 3:
        await asyncio.sleep(0.005)
        raise ValueError(f"bad {i}")
    await Weird()
    return -1


async def test_every_coroutine_reports_once() -> None:
    results: dict[int, Any] = {}

    def done(index: int, outcome: Any) -> None:
        assert index not in results, "reported twice"
        results[index] = outcome

    loop = asyncio.get_running_loop()
    shared: asyncio.Future[None] = loop.create_future()
    loop.call_later(0.02, shared.set_result, None)
    driver: TaskFreeDriver[int] = TaskFreeDriver(done)
    tasks_before = len(asyncio.all_tasks())
    for i in range(1000):
        driver.start(i, worker(i, shared))
    assert len(asyncio.all_tasks()) == tasks_before  # no task was created
    await driver.wait()
    assert len(results) == 1000
    for i, outcome in results.items():
        kind = i % 5
        if kind == 0 or kind == 1:
            assert outcome == i
        elif kind == 2:
            assert outcome == i * 10
        elif kind == 3:
            assert isinstance(outcome, ValueError)
        else:
            assert isinstance(outcome, TypeError)


async def test_many_waiters_on_timers_overlap() -> None:
    count = 0

    def done(index: int, outcome: Any) -> None:
        nonlocal count
        count += 1

    async def sleeper() -> None:
        await asyncio.sleep(0.2)

    driver: TaskFreeDriver[None] = TaskFreeDriver(done)
    started = time.perf_counter()
    for i in range(20_000):
        driver.start(i, sleeper())
    await driver.wait()
    assert count == 20_000
    assert time.perf_counter() - started < 3.0  # concurrent, not 20,000 x 0.2 s


async def test_wait_with_nothing_pending_returns() -> None:
    driver: TaskFreeDriver[int] = TaskFreeDriver(lambda i, o: None)
    await driver.wait()


async def test_cancelled_future_is_reported_not_hung() -> None:
    results: dict[int, Any] = {}
    loop = asyncio.get_running_loop()
    doomed: asyncio.Future[None] = loop.create_future()

    async def waits() -> int:
        await doomed
        return 1

    driver: TaskFreeDriver[int] = TaskFreeDriver(lambda i, o: results.__setitem__(i, o))
    driver.start(0, waits())
    loop.call_later(0.01, doomed.cancel)
    await asyncio.wait_for(driver.wait(), timeout=2)
    assert isinstance(results[0], asyncio.CancelledError)


async def test_waiters_on_one_future_resume_in_order_and_can_wait_again() -> None:
    """Coroutines suspended on one future share one callback; each resumes exactly once,
    in the order it suspended, and may then suspend on another future."""
    order: list[int] = []
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()

    async def twice(i: int) -> int:
        await first
        order.append(i)
        if i % 2:
            await second
        return i

    results: dict[int, Any] = {}
    driver: TaskFreeDriver[int] = TaskFreeDriver(lambda i, o: results.__setitem__(i, o))
    for i in range(100):
        driver.start(i, twice(i))
    loop.call_later(0.01, first.set_result, None)
    loop.call_later(0.02, second.set_result, None)
    await asyncio.wait_for(driver.wait(), timeout=2)
    assert order == list(range(100))
    assert results == {i: i for i in range(100)}


async def test_a_failing_report_does_not_strand_the_other_waiters() -> None:
    """If reporting one coroutine's end raises, the others on the same future still run."""
    loop = asyncio.get_running_loop()
    shared: asyncio.Future[None] = loop.create_future()
    results: dict[int, Any] = {}

    def done(index: int, outcome: Any) -> None:
        if index == 0:
            raise RuntimeError("a bug in the reporting code")
        results[index] = outcome

    async def waits(i: int) -> int:
        await shared
        return i

    driver: TaskFreeDriver[int] = TaskFreeDriver(done)
    for i in range(3):
        driver.start(i, waits(i))
    loop.set_exception_handler(lambda loop, context: None)  # the bug is logged, not raised
    shared.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert results == {1: 1, 2: 2}
