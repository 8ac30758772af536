"""Is the link alive?  Heartbeats out, evidence in (docs/architecture.md, rule 8), sans-I/O.

* **Heartbeats** go out every ``interval`` seconds on a fixed schedule while the
  heartbeat task runs, whatever the peer answered (a late wake-up does not
  shift the next ones; missed ones are skipped, not bunched).  Those in flight
  are remembered by id with their send time, at most :data:`MAX_IN_FLIGHT`
  (the oldest forgotten), so an ack gives the round trip.
* **Evidence**: the time of the last *complete* inbound frame (any: data, pong
  with any payload, close), handed in by the driver; bytes of a frame that
  never completes are not evidence.  The driver may also hand in progress of
  its own outbound backlog acknowledged by the peer's TCP (our own write
  backlog holds the heartbeat up: that silence is ours).
* **Silence**: the link is lost ``timeout`` seconds after the later of the last
  evidence and the moment the client last started reading; never while reading
  is paused because the application is behind (that silence is ours too).
* **Pause warning**: once per session, when reading has been paused for
  ``timeout`` seconds, a person is told (the application is behind).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Final

__all__ = ("MAX_IN_FLIGHT", "Liveness")

#: Heartbeats in flight remembered for their acks; older ones are forgotten.
MAX_IN_FLIGHT: Final = 16


class Liveness:
    """Heartbeat schedule, heartbeats in flight and the evidence of life of one connection.

    ``interval`` and ``timeout`` are seconds (``heartbeat_interval``,
    ``heartbeat_timeout``).  Times are the driver's monotonic clock.
    """

    __slots__ = (
        "_in_flight",
        "interval",
        "last_inbound",
        "next_heartbeat",
        "paused_at",
        "reading_since",
        "timeout",
        "warned",
    )

    def __init__(self, interval: float, timeout: float, now: float = 0.0) -> None:
        self.interval = interval
        self.timeout = timeout
        #: When the next heartbeat is due (``math.inf``: the heartbeat task is not running).
        self.next_heartbeat = math.inf
        #: The latest evidence of life.
        self.last_inbound = now
        #: When the client last started reading (silence counts from here at most).
        self.reading_since = now
        #: Since when reading is paused (None: reading).
        self.paused_at: float | None = None
        #: The pause warning was given in this session.
        self.warned = False
        self._in_flight: dict[Hashable, float] | None = None  # made by the first heartbeat

    # -- the session -----------------------------------------------------------------------

    def begin(self, now: float) -> None:
        """A new session (a state entry): evidence counts from ``now``, reading resumes."""
        self.last_inbound = now
        self.reading_since = now
        self.paused_at = None
        self.warned = False

    def start_heartbeats(self, now: float) -> None:
        """The heartbeat task starts: the first heartbeat is due one interval from now."""
        self.next_heartbeat = now + self.interval

    def stop_heartbeats(self) -> None:
        """The heartbeat task ends: no heartbeat due, none in flight."""
        self.next_heartbeat = math.inf
        self._in_flight = None

    # -- heartbeats ------------------------------------------------------------------------

    def heartbeat_due(self, now: float) -> bool:
        """True if a heartbeat is due at ``now``; the schedule then moves one interval on
        (to one interval past ``now`` if the wake-up was late by more than an interval)."""
        if self.next_heartbeat > now:
            return False
        self.next_heartbeat += self.interval
        if self.next_heartbeat <= now:
            self.next_heartbeat = now + self.interval
        return True

    def sent(self, heartbeat_id: Hashable, now: float) -> None:
        """Heartbeat ``heartbeat_id`` went out at ``now``."""
        in_flight = self._in_flight
        if in_flight is None:
            in_flight = self._in_flight = {}
        in_flight[heartbeat_id] = now
        while len(in_flight) > MAX_IN_FLIGHT:
            del in_flight[next(iter(in_flight))]

    def acked(self, heartbeat_id: Hashable, now: float) -> float | None:
        """The round trip of heartbeat ``heartbeat_id`` in seconds, or None if it is not
        one of ours in flight (an ack of nothing we sent is not an ack)."""
        in_flight = self._in_flight
        if in_flight is None:
            return None
        sent_at = in_flight.pop(heartbeat_id, None)
        if not in_flight:
            self._in_flight = None  # acked: an idle connection keeps no empty dict
        return None if sent_at is None else now - sent_at

    @property
    def in_flight(self) -> int:
        """Heartbeats sent and not acknowledged (at most :data:`MAX_IN_FLIGHT`)."""
        return 0 if self._in_flight is None else len(self._in_flight)

    # -- evidence and silence ----------------------------------------------------------------

    def note(self, at: float) -> bool:
        """Evidence of life at ``at``; True if it moved the last evidence later."""
        if at > self.last_inbound:
            self.last_inbound = at
            return True
        return False

    def silence_deadline(self) -> float:
        """When the link is lost for silence (``math.inf`` while reading is paused)."""
        if self.paused_at is not None:
            return math.inf
        return max(self.last_inbound, self.reading_since) + self.timeout

    # -- the application's backpressure ------------------------------------------------------

    def pause(self, now: float) -> None:
        """The client stopped reading at ``now`` (the application is behind)."""
        if self.paused_at is None:
            self.paused_at = now

    def resume(self, now: float) -> float | None:
        """The client reads again from ``now``; returns how long it was paused when the
        pause was long enough for the warning, given this session (a person then reads
        that it ended), else None."""
        paused_at, self.paused_at = self.paused_at, None
        if paused_at is None:
            return None
        self.reading_since = now
        paused_for = now - paused_at
        return paused_for if self.warned and paused_for >= self.timeout else None

    def warning_deadline(self) -> float:
        """When the pause warning is due (``math.inf``: not paused, or given already)."""
        if self.paused_at is None or self.warned:
            return math.inf
        return self.paused_at + self.timeout

    def warning_due(self, now: float) -> float | None:
        """If the pause warning is due at ``now``: mark it given and return how long
        reading has been paused; else None."""
        if self.warning_deadline() > now:
            return None
        self.warned = True
        assert self.paused_at is not None
        return now - self.paused_at
