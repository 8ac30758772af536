"""Inbound messages on their way to the application: bounded, in order, nothing lost.

The engine :meth:`Inbox.put`\\ s every message it decoded, synchronously, in the
order they arrived; the application takes them one of two ways, chosen when
the connection is built:

* async iteration: ``async for message in conn``;
* a handler (``on_message``): up to ``capacity`` handler calls run at once, as
  jobs of the connection (each handler job takes messages while there are any).

While ``capacity`` or more messages wait (``full``), the engine stops reading
the link until half of them were taken (``has_room``), so TCP pushes back on the peer.
One read may put more than ``capacity`` (what had already arrived); nothing is
dropped.  Messages survive reconnects: a message received before a close is
delivered after it.

A waiting iterator is woken once per batch (the first put after it started
waiting), not once per message.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fsm_live._runtime.jobs import Jobs
from fsm_live._runtime.wakeup import Wakeup
from fsm_live.counters import Counts
from fsm_live.errors import UsageError

__all__ = ("Handler", "Inbox")

logger = logging.getLogger("fsm_live")

Handler = Callable[[Any], Awaitable[None]]


class Inbox:
    """Messages for the application, at most ``capacity`` handled at once."""

    __slots__ = (
        "_changed",
        "_closed",
        "_jobs",
        "_queue",
        "_running",
        "capacity",
        "counts",
        "handler",
        "on_taken",
    )

    def __init__(
        self,
        capacity: int,
        handler: Handler | None = None,
        *,
        jobs: Jobs | None = None,
        counts: Counts | None = None,
    ) -> None:
        if handler is not None and jobs is None:
            raise UsageError("an inbox with a handler needs the jobs to run it")
        self.capacity = capacity
        self.handler = handler
        #: Where a handler's failure is counted (``handler_errors``).
        self.counts = Counts() if counts is None else counts
        self._jobs = jobs
        #: Called after the application took a message (the engine may read again).
        self.on_taken: Callable[[], None] = _nothing
        # Created by the first message: a deque is 760 bytes, even empty.
        self._queue: deque[Any] | None = None
        self._running = 0  # handler jobs alive
        self._closed = False
        self._changed = Wakeup()

    @property
    def handlers_running(self) -> int:
        """Handler jobs alive."""
        return self._running

    def __len__(self) -> int:
        """Messages waiting to be taken (not those a handler is running on)."""
        return 0 if self._queue is None else len(self._queue)

    @property
    def full(self) -> bool:
        """True while ``capacity`` or more messages wait: stop reading."""
        return len(self) >= self.capacity

    @property
    def has_room(self) -> bool:
        """True once at most half of ``capacity`` wait: read again (hysteresis)."""
        return len(self) <= self.capacity // 2

    def put(self, message: Any) -> None:
        """Add a message (never blocks, never drops); start a handler if one may run."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)
        if self.handler is None:
            self._changed.notify()
        elif self._running < self.capacity:
            assert self._jobs is not None
            self._running += 1
            self._jobs.start("handler", self._handle)

    def close(self) -> None:
        """No more messages: iteration ends once those waiting are taken."""
        self._closed = True
        self._changed.notify()

    # -- handlers ------------------------------------------------------------------------

    async def _handle(self) -> None:
        """One handler job: take messages while there are any."""
        handler, queue = self.handler, self._queue
        assert handler is not None
        assert queue is not None
        try:
            while queue:
                message = queue.popleft()
                self.on_taken()
                try:
                    await handler(message)
                except Exception:
                    self.counts.handler_errors += 1
                    logger.exception("on_message handler raised; the message is dropped")
        finally:
            self._running -= 1

    # -- iteration -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Any]:
        """The messages, in order (only without a handler); ends after :meth:`close`."""
        return self

    async def __anext__(self) -> Any:
        while not (queue := self._queue):
            if self._closed:
                raise StopAsyncIteration
            await self._changed.wait()
        message = queue.popleft()
        self.on_taken()
        return message


def _nothing() -> None:
    pass
