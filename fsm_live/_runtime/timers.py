"""One timer per connection, on the event loop's monotonic clock.

The engine keeps its own deadlines (the core's timers, the next heartbeat, the
periodic refreshes, closing links) and asks for a wake-up at the earliest one
with :meth:`Timer.arm`; the callback gets the deadline it was armed for.  A
timer armed for a later time than it already is keeps its earlier wake-up: the
engine finds nothing due, and arms again.  So a deadline that only moves later
(the heartbeat timeout, moved by every byte received) costs nothing until it is
reached.

* :class:`LoopTimer` (asyncio): a ``loop.call_at`` handle; no task.
* :class:`TaskTimer` (any anyio backend, trio's virtual clock included): one
  task sleeping under a cancel scope whose deadline is moved in place.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Protocol

import anyio

from fsm_live._runtime.jobs import Jobs

__all__ = ("LoopTimer", "TaskTimer", "Timer")


class Timer(Protocol):
    """Calls its callback once the earliest deadline armed is due."""

    def arm(self, deadline: float) -> None:
        """Wake up at ``deadline`` at the latest (``math.inf``: no deadline)."""
        ...

    def stop(self) -> None:
        """No more wake-ups."""
        ...


class LoopTimer:
    """An asyncio ``loop.call_at`` handle, moved earlier when needed, never later."""

    __slots__ = ("_callback", "_handle", "_loop", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[float], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf

    def arm(self, deadline: float) -> None:
        if deadline >= self._when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._when = deadline
        self._handle = None if deadline == math.inf else self._loop.call_at(deadline, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._when = None, -math.inf  # arm() is a no-op from now on

    def _fire(self) -> None:
        # asyncio runs a handle up to its clock resolution early: the deadline it was
        # armed for is due, whatever the clock reads a hair before it.
        when, self._handle, self._when = self._when, None, math.inf
        self._callback(when)


class TaskTimer:
    """A task of the connection that sleeps until the earliest deadline armed."""

    __slots__ = ("_callback", "_scope", "_stopped", "_when")

    def __init__(self, jobs: Jobs, callback: Callable[[float], None]) -> None:
        self._callback = callback
        self._when = math.inf
        self._scope: anyio.CancelScope | None = None
        self._stopped = False
        jobs.start("timer", self._run)

    def arm(self, deadline: float) -> None:
        if deadline >= self._when or self._stopped:
            return
        self._when = deadline
        if self._scope is not None:
            self._scope.deadline = deadline  # wakes the sleeper at the new time

    def stop(self) -> None:
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        while not self._stopped:
            with anyio.CancelScope(deadline=self._when) as self._scope:
                await anyio.sleep_forever()
            self._scope = None
            if not self._stopped and anyio.current_time() >= self._when:
                when, self._when = self._when, math.inf
                self._callback(when)
