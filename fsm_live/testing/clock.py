"""A virtual clock for implementations under test: timers named, armed and fired on demand.

Give an implementation a :class:`VirtualClock` where it would take an event loop:
it arms its timers with ``clock.call_later(seconds, callback, *args, name=...)``
(asyncio's ``loop.call_later`` signature, plus the timer's name in the spec) and
cancels them with ``handle.cancel()``.  The harness
(:func:`~fsm_live.testing.check_implementation`) reads :meth:`VirtualClock.armed`
after every step and moves time with :meth:`VirtualClock.advance`, so a timer
left armed in the wrong state, or armed for the wrong time, is a mismatch::

    class Channel:
        def __init__(self, clock):
            self.clock, self.idle = clock, None

        def on_enter_ready(self):
            self.idle = self.clock.call_later(1800, self.trigger, "idle_timeout",
                                              name="idle_timeout")

        def on_exit_ready(self):
            self.idle.cancel()
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

__all__ = ("TimerHandle", "VirtualClock")


class TimerHandle:
    """One armed timer: ``cancel()`` disarms it (again: no effect)."""

    __slots__ = ("_clock", "args", "callback", "cancelled", "deadline", "name")

    def __init__(
        self,
        clock: VirtualClock,
        deadline: float,
        name: str,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        self._clock = clock
        self.deadline = deadline
        self.name = name
        self.callback = callback
        self.args = args
        self.cancelled = False

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else f"at {self.deadline:g}"
        return f"<TimerHandle {self.name} {state}>"

    def cancel(self) -> None:
        self.cancelled = True

    def when(self) -> float:
        """The deadline, on the clock's time (asyncio's ``TimerHandle.when``)."""
        return self.deadline


class VirtualClock:
    """Time that moves only when :meth:`advance` is called; starts at ``start`` seconds."""

    __slots__ = ("_heap", "_order", "now")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()

    def time(self) -> float:
        """The current time (asyncio's ``loop.time``)."""
        return self.now

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any, name: str | None = None
    ) -> TimerHandle:
        """Arm a timer firing ``callback(*args)`` after ``delay`` seconds.

        ``name`` is the timer's name in the spec (default: the callback's
        ``__name__``).  Raises ``ValueError`` for a delay that is negative or not
        finite.
        """
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"timer {name or _name(callback)!r}: delay {delay!r} seconds")
        handle = TimerHandle(self, self.now + delay, name or _name(callback), callback, args)
        heapq.heappush(self._heap, (handle.deadline, next(self._order), handle))
        return handle

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any, name: str | None = None
    ) -> TimerHandle:
        """Arm a timer for the clock time ``when`` (asyncio's ``loop.call_at``)."""
        return self.call_later(max(0.0, when - self.now), callback, *args, name=name)

    def armed(self) -> dict[str, float]:
        """Armed timers: name -> seconds until they fire (the earliest of a name)."""
        found: dict[str, float] = {}
        for deadline, _, handle in sorted(self._heap):
            if not handle.cancelled and handle.name not in found:
                found[handle.name] = deadline - self.now
        return found

    def advance(self, seconds: float) -> None:
        """Move time ``seconds`` ahead, firing each timer due on the way, in order."""
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            deadline, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self.now = max(self.now, deadline)
            handle.cancelled = True  # fired: no longer armed
            handle.callback(*handle.args)
        self.now = max(self.now, end)


def _name(callback: Callable[..., Any]) -> str:
    func = getattr(callback, "func", callback)  # functools.partial
    return str(getattr(func, "__name__", repr(func)))
