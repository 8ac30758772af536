"""What a connection counts, and the frozen snapshot ``stats()`` returns.

The counts are declared once, in :class:`fsm_live.counters.Counts`.
:class:`Counters` adds what the runtime keeps beside them (transitions by edge,
failures by class, the last error and round trip); :class:`Stats` is a frozen
copy of those plus what only the connection knows at that moment (the state,
time in it, the failure streak, the ledger, the jobs alive).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import attrs

from fsm_live.counters import Counts

__all__ = ("AckObserver", "Counters", "Stats", "both")

#: Called with ``(at, rtt)`` after every heartbeat ack: when (the event loop's clock)
#: and the round trip in seconds.
AckObserver = Callable[[float, float], None]


@attrs.frozen(kw_only=True)
class Stats(Counts):
    """A connection's figures at one moment (immutable): the counts of
    :class:`~fsm_live.counters.Counts` (each over the connection's life), and:

    ``state`` and ``time_in_state`` (seconds); ``transitions`` taken, keyed
    ``(source, trigger, dest)``; ``reconnects`` (entries into the dialling state
    after the first); ``failures`` by error class; ``consecutive_failures`` (the
    count the backoff and ``max_failures`` read); ``last_error``; ``heartbeat_rtt``,
    the last heartbeat round trip in seconds (None before the first ack);
    ``buffered``, frames live in the delivery ledger (waiting for a link, in the
    write buffer, or awaiting an acknowledgement); ``tasks_alive``, jobs running.
    """

    state: str
    time_in_state: float = 0.0
    transitions: Mapping[tuple[str, str, str], int] = attrs.field(factory=dict, hash=False)
    reconnects: int = 0
    failures: Mapping[str, int] = attrs.field(factory=dict, hash=False)
    consecutive_failures: int = 0
    last_error: str = ""
    heartbeat_rtt: float | None = None
    buffered: int = 0
    tasks_alive: int = 0


@attrs.define
class Counters(Counts):
    """The mutable counts behind :class:`Stats` (one per connection), and what the
    runtime keeps beside them."""

    transitions: Counter[tuple[str, str, str]] = attrs.Factory(Counter)
    failures: Counter[str] = attrs.Factory(Counter)
    last_error: str = ""
    heartbeat_rtt: float | None = None

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
        return Stats(
            state=state,
            time_in_state=time_in_state,
            transitions=dict(self.transitions),
            reconnects=reconnects,
            failures=dict(self.failures),
            consecutive_failures=consecutive_failures,
            last_error=self.last_error,
            heartbeat_rtt=self.heartbeat_rtt,
            buffered=buffered,
            tasks_alive=tasks_alive,
            **self.counts(),
        )


def both(first: AckObserver | None, then: AckObserver) -> AckObserver:
    """An observer calling ``first`` (if any), then ``then``."""
    if first is None:
        return then

    def chained(at: float, rtt: float) -> None:
        first(at, rtt)
        then(at, rtt)

    return chained
