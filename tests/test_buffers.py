"""The outbound buffer and inbound delivery: bounded, ordered, nothing lost."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from fsm_live.errors import BufferFull
from fsm_live.inbox import Inbox
from fsm_live.outbox import Outbox

pytestmark = pytest.mark.anyio


def test_outbox_is_ordered_and_bounded() -> None:
    outbox = Outbox(capacity=2)
    assert not outbox
    outbox.put("a")
    outbox.put("b")
    with pytest.raises(BufferFull, match="maximum of 2"):
        outbox.put("c")
    assert outbox.peek() == "a"
    assert outbox.peek() == "a"  # peek keeps it: a failed send is retried
    outbox.pop()
    assert outbox.peek() == "b"
    assert outbox.clear() == 1
    assert len(outbox) == 0


def test_empty_outbox_refuses_peek_and_pop() -> None:
    outbox = Outbox(capacity=2)
    for empty in (outbox, Outbox(capacity=2)):
        if empty is outbox:
            outbox.put("a")
            outbox.pop()
        with pytest.raises(IndexError):
            empty.peek()
        with pytest.raises(IndexError):
            empty.pop()
    assert outbox.clear() == 0


async def test_inbox_iteration_applies_backpressure() -> None:
    inbox = Inbox(concurrency=2)
    with anyio.fail_after(5):
        await inbox.deliver(1)
        await inbox.deliver(2)
        with anyio.move_on_after(0.05) as scope:
            await inbox.deliver(3)  # the application is not reading: wait
        assert scope.cancelled_caught
        assert inbox.pending == 3  # the interrupted one is kept, not lost
        inbox.close()
        assert [m async for m in inbox] == [1, 2]
        assert inbox.pending == 1


async def test_interrupted_delivery_is_delivered_first_later() -> None:
    inbox = Inbox(concurrency=1)
    with anyio.fail_after(5):
        await inbox.deliver("a")
        with anyio.move_on_after(0.05):
            await inbox.deliver("b")
        received = [await inbox.__aiter__().__anext__()]
        await inbox.deliver_undelivered()
        received.append(await inbox.__aiter__().__anext__())
    assert received == ["a", "b"]


async def test_handler_concurrency_is_bounded() -> None:
    running = peak = 0
    release = anyio.Event()

    async def handler(message: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    inbox = Inbox(concurrency=3, handler=handler)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            inbox.bind(tg)
            for i in range(3):
                await inbox.deliver(i)
            with anyio.move_on_after(0.05) as scope:
                await inbox.deliver(3)
            assert scope.cancelled_caught
            release.set()
            await inbox.deliver_undelivered()
    assert peak == 3


async def test_handler_errors_are_counted_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(message: Any) -> None:
        raise RuntimeError("boom")

    inbox = Inbox(concurrency=1, handler=handler)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            inbox.bind(tg)
            await inbox.deliver("x")
            await inbox.deliver("y")
    assert inbox.handler_errors == 2
    assert "on_message handler raised" in caplog.text
