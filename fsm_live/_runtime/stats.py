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

__all__ = ("AckObserver", "Counters", "Stats")

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
    """The mutable counters behind :class:`Stats` (one per connection).

    ``on_heartbeat_ack`` is None unless someone watches the round trips (a trace
    writing stats records, a metrics collector): the engine calls it after every
    heartbeat ack, and checks only ``is None`` otherwise.
    """

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
    on_heartbeat_ack: AckObserver | None = None

    def add_ack_observer(self, observer: AckObserver) -> None:
        """Call ``observer(at, rtt)`` after every heartbeat ack, after those added before."""
        previous = self.on_heartbeat_ack
        if previous is None:
            self.on_heartbeat_ack = observer
            return

        def both(at: float, rtt: float) -> None:
            previous(at, rtt)
            observer(at, rtt)

        self.on_heartbeat_ack = both

    def snapshot(self, *, state: str, time_in_state: float, reconnects: int,
                 consecutive_failures: int, buffered: int, tasks_alive: int) -> Stats:
        """A frozen :class:`Stats`: these counters, with the connection's figures."""
        counted = {field.name: getattr(self, field.name) for field in _COUNTER_FIELDS}
        counted["transitions"] = dict(self.transitions)
        counted["failures"] = dict(self.failures)
        return Stats(state=state, time_in_state=time_in_state, reconnects=reconnects,
                     consecutive_failures=consecutive_failures, buffered=buffered,
                     tasks_alive=tasks_alive, **counted)


#: The fields :meth:`Counters.snapshot` copies into :class:`Stats` (not the observer).
_COUNTER_FIELDS = tuple(field for field in attrs.fields(Counters)
                        if field.name != "on_heartbeat_ack")
