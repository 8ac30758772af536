"""Wakeup: a broadcast wake-up whose Event exists only while a task waits."""

from __future__ import annotations

import anyio
import pytest

from fsm_live._runtime.wakeup import Wakeup

pytestmark = pytest.mark.anyio


async def test_notify_wakes_every_waiter_and_is_not_remembered() -> None:
    wakeup = Wakeup()
    wakeup.notify()  # nobody waits: nothing happens, nothing is kept
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await wakeup.wait()
        woken.append(n)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 1)
            tg.start_soon(waiter, 2)
            await anyio.wait_all_tasks_blocked()
            assert woken == []  # the earlier notify did not count
            wakeup.notify()
    assert sorted(woken) == [1, 2]


async def test_a_cancelled_waiter_leaves_it_usable() -> None:
    wakeup = Wakeup()
    with anyio.move_on_after(0.01):
        await wakeup.wait()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wakeup.wait)
            await anyio.wait_all_tasks_blocked()
            wakeup.notify()
