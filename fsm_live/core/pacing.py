"""Pacing the reconnect attempts of many connections (sans-I/O).

Jittered backoff spreads one client's retries; it does not bound how many of a
thousand clients retry in the same 100 ms after a server restarts, and an event
loop that stalls under the load lets timers that fell due meanwhile fire
together.  A :class:`ReconnectPacer` shared by the connections of one process
(a :class:`~fsm_live.fleet.Fleet` makes one) bounds that directly: every backoff
deadline is moved to the first time slot at or after it that still has room.

Time is cut into bins of ``bin_width`` seconds, each holding ``capacity``
attempts: about 10 ms holding ``rate / 100`` (rounded; one at least, in bins of
``1 / rate`` below 100 a second), the width set so that the rate is exact; any
window of ``w`` seconds holds at most ``rate * (w + bin_width)`` attempts.  A deadline is never
moved earlier, and a connection alone never waits for the pacer (a bin always
has room for one).

Slots are reserved ahead; the bound is kept where it matters, when attempts are
made: an attempt whose slot is due asks :meth:`ReconnectPacer.due`, which lets it
go only if the bin it is made in has not had its capacity of attempts made yet,
and else gives it a new slot.  So a stall of the event loop (a garbage collection
over a large heap), which makes every slot that passed meanwhile due at once, does
not let them go together, and a loop that is late all the time is not a stall:
attempts go late, at the rate.  Reservations are not returned when a connection closes
before its slot; a slot in the past is forgotten.  Finding a slot costs about
O(1) however many are taken: a full bin links to a later one to try (with path
compression), so 10,000 members told at once that their endpoint is back reserve
their slots in milliseconds, not in the seconds a scan bin by bin would take
(which would stall the event loop, and let slots that fell due meanwhile fire
together).

All connections sharing a pacer must use one clock (one event loop): deadlines
are compared as plain numbers.
"""

from __future__ import annotations

import math

from fsm_live.errors import ConfigError

__all__ = ("ReconnectPacer",)

_BIN = 0.01  # seconds, about: the width is set so that the rate is exact


class ReconnectPacer:
    """At most ``rate`` reconnect attempts per second among the connections sharing it.

    Raises ValueError unless ``rate`` is a positive finite number.
    """

    __slots__ = (
        "_bins",
        "_made",
        "_made_in",
        "_oldest",
        "_skip",
        "bin_width",
        "capacity",
        "rate",
    )

    def __init__(self, rate: float) -> None:
        if not 0 < rate < math.inf:
            raise ConfigError(
                "rate", f"must be a positive number of attempts per second, got {rate!r}"
            )
        self.rate = rate
        self.capacity = max(1, round(rate * _BIN))
        self.bin_width = self.capacity / rate
        self._bins: dict[int, int] = {}  # bin index -> attempts reserved in it
        self._skip: dict[int, int] = {}  # a full bin -> a later bin to try
        self._oldest = 0  # no bin below this index is kept
        self._made_in = -1  # the bin the latest attempt was made in
        self._made = 0  # attempts made in it

    def __repr__(self) -> str:
        return f"<ReconnectPacer {self.rate:g}/s, {self.bins_held} bins held>"

    @property
    def bins_held(self) -> int:
        """Bins kept in memory: those at or after the latest ``now``, plus at most 64."""
        return len(self._bins)

    def reserve(self, deadline: float, now: float) -> float:
        """The time to attempt at: ``deadline``, or the start of the first later bin
        with room.  Counts the attempt in that bin; forgets bins before ``now``."""
        self._forget_before(now)
        own = self._bin(deadline)
        index = self._first_with_room(max(own, self._oldest))
        bins = self._bins
        taken = bins[index] = bins.get(index, 0) + 1
        if taken >= self.capacity:
            self._skip[index] = index + 1
        # In its own bin a deadline stays exact (index * width may round past it).
        return deadline if index == own else max(deadline, index * self.bin_width)

    def due(self, now: float) -> float | None:
        """An attempt's slot is due and it is ``now``: None if it goes now (counted as
        made in the bin of ``now``), or, if that bin has had its capacity of attempts
        made already (the loop stalled past earlier slots, which went first), the new
        slot to wait for: the first bin after it with room.

        Progress is kept: an attempt waits only while others go at the rate."""
        index = max(self._bin(now), self._made_in)
        if index != self._made_in:
            self._made_in, self._made = index, 0
        if self._made < self.capacity:
            self._made += 1
            return None
        return self.reserve((index + 1) * self.bin_width, now)

    def _bin(self, at: float) -> int:
        """The bin ``at`` falls in.  A bin's start, index * width, may round a hair
        below it (4.3 / 0.1 is 42.99...): a millionth of a bin's width more puts it in
        its bin, so a slot returned at a bin's start is counted there."""
        width = self.bin_width
        return math.floor((at + width * 1e-6) / width)

    def _first_with_room(self, index: int) -> int:
        """The first bin at or after ``index`` with room: follows the full bins' links
        and points each one passed straight at the answer (path compression)."""
        skip = self._skip
        passed = []
        while index in skip:
            passed.append(index)
            index = skip[index]
        for full in passed:
            skip[full] = index
        return index

    def _forget_before(self, now: float) -> None:
        current = self._bin(now)
        if current <= self._oldest:
            return
        self._oldest = current
        if len(self._bins) > 64:  # amortised: sweep only once there is something to sweep
            self._bins = {i: n for i, n in self._bins.items() if i >= current}
            # Links only point forward: those kept never lead to a bin forgotten.
            self._skip = {i: n for i, n in self._skip.items() if i >= current}
