"""Counters a connection keeps, and the frozen snapshot ``stats()`` returns.

:class:`Stats` is :class:`Counters`' fields (copied, so later counting does not
change a snapshot) plus what only the connection knows at that moment (the
state, time in it, the failure streak, the buffer, the jobs alive):
:meth:`Counters.snapshot` builds it, so a new counter appears in ``stats()``
by being declared once in each class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import attrs

__all__ = ("AckObserver", "Counters", "Stats", "both")

#: Called with ``(at, rtt)`` after every heartbeat ack: when (the event loop's clock)
#: and the round trip in seconds.
AckObserver = Callable[[float, float], None]


@attrs.frozen
class Stats:
    """A connection's figures at one moment (immutable).

    ``transitions`` counts edges taken, keyed ``(source, trigger, dest)``;
    ``failures`` counts failures by error class; ``heartbeat_rtt`` is the last
    heartbeat round trip in seconds (None before the first ack).
    """

    state: str
    time_in_state: float
    transitions: Mapping[tuple[str, str, str], int]
    connects: int
    reconnects: int
    failures: Mapping[str, int]
    consecutive_failures: int
    last_error: str
    heartbeats_sent: int
    heartbeats_acked: int
    heartbeat_rtt: float | None
    messages_in: int
    messages_out: int
    duplicates_dropped: int
    token_refreshes: int
    token_refresh_failures: int
    cookie_refreshes: int
    buffered: int
    tasks_alive: int


@attrs.define
class Counters:
    """The mutable counters behind :class:`Stats` (one per connection)."""

    transitions: Counter[tuple[str, str, str]] = attrs.Factory(Counter)
    failures: Counter[str] = attrs.Factory(Counter)
    connects: int = 0
    last_error: str = ""
    heartbeats_sent: int = 0
    heartbeats_acked: int = 0
    heartbeat_rtt: float | None = None
    messages_in: int = 0
    messages_out: int = 0
    duplicates_dropped: int = 0
    token_refreshes: int = 0
    token_refresh_failures: int = 0
    cookie_refreshes: int = 0

    def snapshot(
        self,
        *,
        state: str,
        time_in_state: float,
        reconnects: int,
        consecutive_failures: int,
        buffered: int,
        tasks_alive: int,
    ) -> Stats:
        """A frozen :class:`Stats`: these counters, with the connection's figures."""
        counted = {field.name: getattr(self, field.name) for field in _COUNTER_FIELDS}
        counted["transitions"] = dict(self.transitions)
        counted["failures"] = dict(self.failures)
        return Stats(
            state=state,
            time_in_state=time_in_state,
            reconnects=reconnects,
            consecutive_failures=consecutive_failures,
            buffered=buffered,
            tasks_alive=tasks_alive,
            **counted,
        )


_COUNTER_FIELDS = attrs.fields(Counters)


def both(first: AckObserver | None, then: AckObserver) -> AckObserver:
    """An observer calling ``first`` (if any), then ``then``."""
    if first is None:
        return then

    def chained(at: float, rtt: float) -> None:
        first(at, rtt)
        then(at, rtt)

    return chained
