"""Inbound delivery: in order, nothing lost, backpressure by ``full`` / ``has_room``."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from fsm_live._runtime.inbox import Inbox
from fsm_live._runtime.jobs import Jobs
from fsm_live.errors import UsageError

pytestmark = pytest.mark.anyio


def test_full_from_capacity_and_room_again_at_half() -> None:
    inbox = Inbox(4)
    taken: list[int] = []
    inbox.on_taken = lambda: taken.append(len(inbox))
    for i in range(3):
        inbox.put(i)
    assert not inbox.full
    inbox.put(3)
    inbox.put(4)  # one read may bring more than capacity: nothing is dropped
    assert (len(inbox), inbox.full, inbox.has_room) == (5, True, False)


async def test_iteration_is_in_order_and_ends_after_close() -> None:
    inbox = Inbox(2)
    seen: list[int] = []
    inbox.on_taken = lambda: seen.append(len(inbox))
    for i in range(5):
        inbox.put(i)
    inbox.close()
    with anyio.fail_after(5):
        assert [m async for m in inbox] == [0, 1, 2, 3, 4]
    assert seen == [4, 3, 2, 1, 0]  # the engine hears of every message taken


async def test_a_waiting_iterator_is_woken_by_a_put() -> None:
    inbox = Inbox(2)
    got: list[Any] = []

    async def take() -> None:
        got.append(await anext(aiter(inbox)))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await anyio.sleep(0.01)
            inbox.put("m")
    assert got == ["m"]


async def test_handlers_run_at_most_capacity_at_once_and_take_every_message() -> None:
    running = peak = 0
    release = anyio.Event()
    handled: list[int] = []

    async def handler(message: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        handled.append(message)
        running -= 1

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            jobs = Jobs(lambda job, exc: None, lambda: None)
            jobs.bind(tg)
            inbox = Inbox(3, handler, jobs=jobs)
            for i in range(10):
                inbox.put(i)
            await anyio.sleep(0.01)
            assert (peak, inbox.handlers_running, len(inbox)) == (3, 3, 7)
            release.set()
    assert sorted(handled) == list(range(10))
    assert peak == 3


async def test_handler_errors_are_counted_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(message: Any) -> None:
        raise RuntimeError("boom")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            jobs = Jobs(lambda job, exc: None, lambda: None)
            jobs.bind(tg)
            inbox = Inbox(1, handler, jobs=jobs)
            inbox.put("x")
            inbox.put("y")
    assert inbox.counts.handler_errors == 2
    assert "on_message handler raised" in caplog.text


def test_a_handler_needs_jobs() -> None:
    async def handler(message: Any) -> None:
        pass

    with pytest.raises(UsageError, match="needs the jobs"):
        Inbox(1, handler)
