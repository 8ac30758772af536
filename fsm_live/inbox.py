"""Inbound delivery to the application: bounded, with backpressure, nothing lost.

Two ways to consume, chosen when the connection is built:

* a handler (``on_message``): up to ``concurrency`` handler calls run at once;
  at the bound :meth:`Inbox.deliver` waits, so the reader stops reading and TCP
  pushes back on the server;
* async iteration: messages wait in a queue of ``concurrency`` slots; when the
  application does not keep up, :meth:`Inbox.deliver` waits likewise.

A message whose delivery was interrupted (the reader was cancelled on a
reconnect) is kept and delivered first by the next reader.

The common case costs no await and no allocation beyond the queue's own:
:meth:`Inbox.offer` hands a message over synchronously when nothing has to wait,
and an Event exists only while a side (the reader at the bound, or the
application on an empty queue) actually waits for the other (a
:class:`~fsm_live.wakeup.Wakeup`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from fsm_live.wakeup import Wakeup

__all__ = ("Handler", "Inbox")

logger = logging.getLogger("fsm_live")

Handler = Callable[[Any], Awaitable[None]]


class Inbox:
    """Hands decoded messages to the application, at most ``concurrency`` at a time.

    One task delivers (the connection's current reader); any number may iterate.
    """

    __slots__ = ("_capacity", "_changed", "_closed", "_queue", "_slots", "_task_group",
                 "_undelivered", "handler", "handler_errors")

    def __init__(self, concurrency: int, handler: Handler | None = None) -> None:
        self.handler = handler
        self.handler_errors = 0
        self._capacity = concurrency
        # Only a handler needs the semaphore; only iteration needs the queue.
        self._slots = anyio.Semaphore(concurrency) if handler is not None else None
        # Delivered, waiting for the iterating application; created by the first
        # message (a deque is 760 bytes, even empty).
        self._queue: deque[Any] | None = None
        self._closed = False
        # Messages whose delivery had to wait (at most one or two: a list is smaller
        # than a deque); cancelled deliveries leave theirs here for the next reader.
        self._undelivered: list[Any] = []
        self._changed = Wakeup()  # the queue changed, or the inbox was closed
        self._task_group: anyio.abc.TaskGroup | None = None

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Where handler calls run (the connection's task group)."""
        self._task_group = task_group

    @property
    def pending(self) -> int:
        """Messages received but not yet taken by the application."""
        return len(self._undelivered) + (0 if self._queue is None else len(self._queue))

    def offer(self, message: Any) -> bool:
        """Deliver ``message`` now if nothing has to wait; return whether it was taken.

        Never blocks and is no checkpoint.  False (the application is at its bound,
        or an earlier message still waits): the caller must :meth:`deliver` it.
        """
        if self._undelivered:
            return False  # keep the order: older messages go first
        return self._take(message)

    @property
    def pending_delivery(self) -> bool:
        """True while a message waits for room (an interrupted delivery left it)."""
        return bool(self._undelivered)

    def hold(self, message: Any) -> None:
        """Keep ``message`` for :meth:`deliver_undelivered` (after what waits already)."""
        self._undelivered.append(message)

    async def deliver(self, message: Any) -> None:
        """Deliver one message, waiting while the application is at its bound."""
        self.hold(message)
        await self.deliver_undelivered()

    async def deliver_undelivered(self) -> None:
        """Deliver what an interrupted delivery left, oldest first."""
        while self._undelivered:
            await self._deliver_waiting(self._undelivered[0])
            del self._undelivered[0]

    def _take(self, message: Any) -> bool:
        """Queue ``message``, or start its handler, if there is room; never waits."""
        if self._slots is not None:
            try:
                self._slots.acquire_nowait()
            except anyio.WouldBlock:
                return False
            self._start_handler(message)
            return True
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._capacity:
            return False
        queue.append(message)
        self._changed.notify()
        return True

    async def _deliver_waiting(self, message: Any) -> None:
        """Queue ``message``, or start its handler, once there is room.

        Cancelled while waiting, it has done nothing: the message stays undelivered.
        """
        if self._slots is not None:
            await self._slots.acquire()
            self._start_handler(message)
            return
        while not self._take(message):
            await self._changed.wait()

    def _start_handler(self, message: Any) -> None:
        assert self._task_group is not None, "Inbox.bind() first"
        self._task_group.start_soon(self._handle, message)

    async def _handle(self, message: Any) -> None:
        assert self.handler is not None
        assert self._slots is not None
        try:
            await self.handler(message)
        except Exception:
            self.handler_errors += 1
            logger.exception("on_message handler raised; the message is dropped")
        finally:
            self._slots.release()

    def close(self) -> None:
        """No more messages: iteration ends once the buffered ones are taken."""
        self._closed = True
        self._changed.notify()

    def __aiter__(self) -> AsyncIterator[Any]:
        """The messages, in order (only without a handler); ends after :meth:`close`."""
        return self

    async def __anext__(self) -> Any:
        while not (queue := self._queue):
            if self._closed:
                raise StopAsyncIteration
            await self._changed.wait()
        message = queue.popleft()
        self._changed.notify()  # the reader may wait for room
        return message
