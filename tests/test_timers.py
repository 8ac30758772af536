"""fsm_live._runtime.timers: one wake-up per connection at the earliest deadline armed.

Arming earlier moves the wake-up; arming later keeps the earlier one; the callback
gets the deadline it was armed for; ``stop()`` ends the wake-ups for good.
:class:`TaskTimer` is tested in trio's virtual time (MockClock), and on both
backends with deadlines already due; :class:`LoopTimer` on a real asyncio loop with
deadlines already due (no sleeping).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from fsm_live._runtime.jobs import Jobs
from fsm_live._runtime.timers import LoopTimer, TaskTimer

pytestmark = pytest.mark.timeout(5)


# -- LoopTimer ---------------------------------------------------------------------------


def run_loop_timer(scenario: Callable[[LoopTimer, float], Any]) -> list[float]:
    """Run ``scenario(timer, now)`` on a fresh asyncio loop, let due handles run, and
    return the deadlines the callback got."""
    fired: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        timer = LoopTimer(loop, fired.append)
        scenario(timer, loop.time())
        for _ in range(5):
            await asyncio.sleep(0)
        timer.stop()

    asyncio.run(main())
    return fired


def test_loop_timer_calls_back_with_the_deadline_armed() -> None:
    deadlines: list[float] = []

    def scenario(timer: LoopTimer, now: float) -> None:
        deadlines.append(now - 1.0)
        timer.arm(now - 1.0)

    assert run_loop_timer(scenario) == deadlines


def test_loop_timer_keeps_its_earlier_wake_up() -> None:
    deadlines: list[float] = []

    def scenario(timer: LoopTimer, now: float) -> None:
        deadlines.append(now - 1.0)
        timer.arm(now - 1.0)
        timer.arm(now + 3600.0)  # later: ignored

    assert run_loop_timer(scenario) == deadlines


def test_loop_timer_moves_its_wake_up_earlier() -> None:
    deadlines: list[float] = []

    def scenario(timer: LoopTimer, now: float) -> None:
        timer.arm(now + 3600.0)
        deadlines.append(now - 2.0)
        timer.arm(now - 2.0)

    assert run_loop_timer(scenario) == deadlines


def test_loop_timer_with_no_deadline_never_fires() -> None:
    assert run_loop_timer(lambda timer, now: timer.arm(math.inf)) == []


def test_loop_timer_stopped_never_fires_again() -> None:
    def scenario(timer: LoopTimer, now: float) -> None:
        timer.arm(now - 1.0)
        timer.stop()
        timer.arm(now - 2.0)  # a no-op from now on

    assert run_loop_timer(scenario) == []


def test_loop_timer_can_be_armed_again_from_its_callback() -> None:
    fired: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()

        def callback(deadline: float) -> None:
            fired.append(deadline)
            if len(fired) == 1:
                timer.arm(now - 0.5)  # even later than the first: it is disarmed now

        timer = LoopTimer(loop, callback)
        timer.arm(now - 1.0)
        for _ in range(10):
            await asyncio.sleep(0)
        timer.stop()

    asyncio.run(main())
    assert len(fired) == 2
    assert fired[0] < fired[1]


# -- TaskTimer ---------------------------------------------------------------------------


@asynccontextmanager
async def task_timer(fired: list[tuple[float, float]]) -> AsyncIterator[tuple[TaskTimer, Jobs]]:
    """A TaskTimer whose callback records ``(deadline, clock at the call)``; stopped and
    its job joined on exit."""
    crashes: list[Exception] = []
    jobs = Jobs(lambda job, exc: crashes.append(exc), lambda: None)
    async with anyio.create_task_group() as tg:
        jobs.bind(tg)
        timer = TaskTimer(jobs, lambda when: fired.append((when, anyio.current_time())))
        assert jobs.alive == 1  # one task: the timer's
        yield timer, jobs
        timer.stop()
    assert jobs.alive == 0
    assert crashes == []


@pytest.mark.anyio
async def test_task_timer_fires_a_due_deadline_on_any_backend() -> None:
    fired: list[tuple[float, float]] = []
    async with task_timer(fired) as (timer, _):
        deadline = anyio.current_time() - 1.0
        timer.arm(deadline)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
    assert [when for when, _ in fired] == [deadline]


@pytest.mark.anyio
async def test_task_timer_stopped_ends_its_job_on_any_backend() -> None:
    fired: list[tuple[float, float]] = []
    async with task_timer(fired) as (timer, jobs):
        await anyio.lowlevel.checkpoint()
        timer.stop()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        assert jobs.alive == 0
        timer.arm(anyio.current_time() - 1.0)  # a no-op once stopped
        await anyio.lowlevel.checkpoint()
    assert fired == []


class TestTaskTimerInVirtualTime:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    pytestmark = pytest.mark.anyio

    async def test_it_wakes_at_the_deadline_not_before(self) -> None:
        fired: list[tuple[float, float]] = []
        async with task_timer(fired) as (timer, _):
            start = anyio.current_time()
            timer.arm(start + 5.0)
            await anyio.sleep(4.9)
            assert fired == []
            await anyio.sleep(1.0)
        [(when, clock)] = fired
        assert when == start + 5.0
        assert start + 5.0 <= clock < start + 5.1

    async def test_a_later_deadline_keeps_the_earlier_wake_up(self) -> None:
        fired: list[tuple[float, float]] = []
        async with task_timer(fired) as (timer, _):
            start = anyio.current_time()
            timer.arm(start + 5.0)
            timer.arm(start + 10.0)
            await anyio.sleep(20.0)
        assert [when for when, _ in fired] == [start + 5.0]

    async def test_an_earlier_deadline_moves_the_wake_up_in_place(self) -> None:
        fired: list[tuple[float, float]] = []
        async with task_timer(fired) as (timer, _):
            start = anyio.current_time()
            timer.arm(start + 10.0)
            await anyio.sleep(1.0)  # the sleeper is waiting for +10 now
            timer.arm(start + 3.0)
            await anyio.sleep(20.0)
        [(when, clock)] = fired
        assert when == start + 3.0
        assert clock < start + 3.1

    async def test_it_can_be_armed_again_after_it_fired(self) -> None:
        fired: list[tuple[float, float]] = []
        async with task_timer(fired) as (timer, _):
            start = anyio.current_time()
            timer.arm(start + 1.0)
            await anyio.sleep(2.0)
            timer.arm(start + 5.0)  # later than the first: it is disarmed after firing
            await anyio.sleep(10.0)
        assert [when for when, _ in fired] == [start + 1.0, start + 5.0]

    async def test_no_deadline_never_fires(self) -> None:
        fired: list[tuple[float, float]] = []
        async with task_timer(fired) as (timer, _):
            timer.arm(math.inf)
            await anyio.sleep(3600.0)
        assert fired == []

    async def test_stop_cancels_a_pending_wake_up(self) -> None:
        fired: list[tuple[float, float]] = []
        async with task_timer(fired) as (timer, jobs):
            timer.arm(anyio.current_time() + 5.0)
            await anyio.sleep(1.0)
            timer.stop()
            await anyio.sleep(10.0)
            assert jobs.alive == 0
        assert fired == []
