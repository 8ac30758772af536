"""What a scrape reports, as plain data: pure functions of ``Stats`` snapshots.

:class:`Figures` is one label set's worth of the metrics (a connection, or many
added up).  Counters only grow; gauges (``states``, ``buffered``, ``tasks``)
are the values now.  No prometheus-client here, so the arithmetic is tested
without it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import attrs

from fsm_live._runtime.stats import Stats
from fsm_live.counters import COUNT_NAMES, Counts

__all__ = ("CounterFigures", "Figures", "counters_of")


@attrs.define
class CounterFigures(Counts):
    """The counters of one connection (or the sum of several): they only grow.  The
    counts of :class:`~fsm_live.counters.Counts`, plus transitions by edge,
    failures by class and reconnect attempts."""

    transitions: Counter[tuple[str, str, str]] = attrs.Factory(Counter)
    failures: Counter[str] = attrs.Factory(Counter)
    reconnects: int = 0

    def add(self, other: CounterFigures) -> None:
        self.transitions.update(other.transitions)
        self.failures.update(other.failures)
        self.reconnects += other.reconnects
        for name in COUNT_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def counters_of(stats: Stats) -> CounterFigures:
    """The counters of one connection's ``stats()``."""
    return CounterFigures(
        transitions=Counter(stats.transitions),
        failures=Counter(stats.failures),
        reconnects=stats.reconnects,
        **stats.counts(),
    )


@attrs.define
class Figures:
    """One label set's metrics: connections per state (every state of the spec listed),
    the counters, and the gauges ``buffered`` (frames waiting in send buffers) and
    ``tasks`` (jobs alive)."""

    states: dict[str, int]
    counters: CounterFigures = attrs.Factory(CounterFigures)
    buffered: int = 0
    tasks: int = 0

    @classmethod
    def empty(cls, states: Iterable[str]) -> Figures:
        return cls(dict.fromkeys(states, 0))

    def add_live(self, stats: Stats) -> None:
        """Add a connection that is running (its state, counters and gauges)."""
        self.states[stats.state] = self.states.get(stats.state, 0) + 1
        self.counters.add(counters_of(stats))
        self.buffered += stats.buffered
        self.tasks += stats.tasks_alive
