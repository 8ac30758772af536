"""Pacing the reconnect attempts of many connections (sans-I/O).

Jittered backoff spreads one client's retries; it does not bound how many of a
thousand clients retry in the same 100 ms after a server restarts, and an event
loop that stalls under the load lets timers that fell due meanwhile fire
together.  A :class:`ReconnectPacer` shared by the connections of one process
(a :class:`~fsm_live.fleet.Fleet` makes one) bounds that directly: every backoff
deadline is moved to the first time slot at or after it that still has room.

Time is cut into bins of ``bin_width`` seconds (10 ms, or ``1 / rate`` when that
is longer), each holding ``rate * bin_width`` attempts, so any window of ``w``
seconds holds at most ``rate * (w + bin_width)`` attempts.  A deadline is never
moved earlier, and a connection alone never waits for the pacer (a bin always
has room for one).  Reservations are not returned when a connection closes
before its slot; a slot in the past is forgotten.

All connections sharing a pacer must use one clock (one event loop): deadlines
are compared as plain numbers.
"""

from __future__ import annotations

import math

from fsm_live.errors import ConfigError

__all__ = ("ReconnectPacer",)

_MIN_BIN = 0.01


class ReconnectPacer:
    """At most ``rate`` reconnect attempts per second among the connections sharing it.

    Raises ValueError unless ``rate`` is a positive finite number.
    """

    __slots__ = ("_bins", "_oldest", "bin_width", "capacity", "rate")

    def __init__(self, rate: float) -> None:
        if not 0 < rate < math.inf:
            raise ConfigError(
                "rate", f"must be a positive number of attempts per second, got {rate!r}"
            )
        self.rate = rate
        self.bin_width = max(_MIN_BIN, 1.0 / rate)
        self.capacity = max(1, math.floor(rate * self.bin_width))
        self._bins: dict[int, int] = {}  # bin index -> attempts reserved in it
        self._oldest = 0  # no bin below this index is kept

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
        own = math.floor(deadline / self.bin_width)
        index = max(own, self._oldest)
        bins = self._bins
        while bins.get(index, 0) >= self.capacity:
            index += 1
        bins[index] = bins.get(index, 0) + 1
        # In its own bin a deadline stays exact (index * width may round past it).
        return deadline if index == own else max(deadline, index * self.bin_width)

    def _forget_before(self, now: float) -> None:
        current = math.floor(now / self.bin_width)
        if current <= self._oldest:
            return
        self._oldest = current
        if len(self._bins) > 64:  # amortised: sweep only once there is something to sweep
            self._bins = {i: n for i, n in self._bins.items() if i >= current}
