"""Inbound delivery to the application: bounded, with backpressure, nothing lost.

Two ways to consume, chosen when the connection is built:

* a handler (``on_message``): up to ``concurrency`` handler calls run at once;
  at the bound :meth:`Inbox.deliver` waits, so the reader stops reading and TCP
  pushes back on the server;
* async iteration: messages wait in a stream of ``concurrency`` slots; when the
  application does not keep up, :meth:`Inbox.deliver` waits likewise.

A message whose delivery was interrupted (the reader was cancelled on a
reconnect) is kept and delivered first by the next reader.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

__all__ = ("Handler", "Inbox")

logger = logging.getLogger("fsm_live")

Handler = Callable[[Any], Awaitable[None]]


class Inbox:
    """Hands decoded messages to the application, at most ``concurrency`` at a time."""

    def __init__(self, concurrency: int, handler: Handler | None = None) -> None:
        self.handler = handler
        self.handler_errors = 0
        self._slots = anyio.Semaphore(concurrency)
        self._capacity = concurrency
        self._queue: deque[Any] = deque()  # delivered, waiting for the iterating application
        self._queue_changed = anyio.Event()
        self._closed = False
        self._undelivered: deque[Any] = deque()
        self._task_group: anyio.abc.TaskGroup | None = None

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Where handler calls run (the connection's task group)."""
        self._task_group = task_group

    @property
    def pending(self) -> int:
        """Messages received but not yet taken by the application."""
        return len(self._undelivered) + len(self._queue)

    async def deliver(self, message: Any) -> None:
        """Deliver one message, waiting while the application is at its bound."""
        self._undelivered.append(message)
        await self.deliver_undelivered()

    async def deliver_undelivered(self) -> None:
        """Deliver what an interrupted delivery left, oldest first."""
        while self._undelivered:
            await self._deliver_one(self._undelivered[0])
            self._undelivered.popleft()

    async def _deliver_one(self, message: Any) -> None:
        if self.handler is None:
            while len(self._queue) >= self._capacity:
                await self._wait_queue_changed()
            self._queue.append(message)
            self._notify()
            return
        assert self._task_group is not None, "Inbox.bind() first"
        await self._slots.acquire()
        self._task_group.start_soon(self._handle, message)

    async def _handle(self, message: Any) -> None:
        assert self.handler is not None
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
        self._notify()

    def _notify(self) -> None:
        self._queue_changed.set()
        self._queue_changed = anyio.Event()

    async def _wait_queue_changed(self) -> None:
        await self._queue_changed.wait()

    def __aiter__(self) -> AsyncIterator[Any]:
        """The messages, in order (only without a handler); ends after :meth:`close`."""
        return self

    async def __anext__(self) -> Any:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            await self._wait_queue_changed()
        message = self._queue.popleft()
        self._notify()
        return message
