"""A fleet's figures: the frozen :class:`FleetStats` snapshot and the pieces behind it.

Everything here is pure (no I/O, no clock of its own): times are passed in, so
the aggregation is tested without an event loop.  Memory is bounded whatever
the fleet's age: :class:`TransitionRate` keeps one counter per ``resolution``
seconds of its window, and recent transitions live in one bounded buffer per
fleet (see :class:`fsm_live.fleet.Fleet`).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping

import attrs

from fsm_live._runtime.stats import Stats
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.endpoint import EndpointStatus
from fsm_live.counters import COUNT_NAMES, Counts
from fsm_live.errors import ConfigError
from fsm_live.spec import StateSpec

__all__ = ("ConnectionSummary", "FleetStats", "FleetTransition", "TransitionRate", "summarize")


@attrs.frozen
class FleetTransition:
    """One transition of the fleet member ``key``."""

    key: str
    record: TransitionRecord


@attrs.frozen
class ConnectionSummary:
    """One member, as the fleet's list of worst connections shows it.

    ``crash`` says why the member's connection crashed (exception types and
    messages; None while it runs); a crashed member keeps the state it had.
    """

    key: str
    state: str
    consecutive_failures: int
    time_in_state: float
    last_error: str
    crash: str | None = None


@attrs.frozen(kw_only=True)
class FleetStats(Counts):
    """A fleet's figures at one moment (``at``, ``anyio.current_time()``), immutable.

    The counts of :class:`~fsm_live.counters.Counts` are summed over the members now.

    * ``connections``: members now (crashed ones included);
    * ``states``: members per state, every state of the spec listed (zeros too), in
      spec order; crashed members are counted in ``crashed`` instead;
    * ``transitions_total``: transitions since the fleet started, of members removed
      since included; ``transitions_per_minute``: those in the last ``rate_window``
      seconds, scaled to one minute;
    * ``failures`` (by error class), ``connects``, ``reconnects``, heartbeats and
      messages: summed over the members now (each over its connection's life);
    * ``worst``: up to N members that are not well, worst first: crashed, then by
      the severity of their state (the spec's log level: FAILED before
      RECONNECTING), consecutive failures, and time in that state;
    * ``recent``: the latest transitions of the fleet, oldest first;
    * ``endpoints``: the endpoints the members dial, each up or down and since when.
    """

    at: float
    connections: int
    states: Mapping[str, int]
    crashed: int
    transitions_total: int
    transitions_per_minute: float
    failures: Mapping[str, int]
    reconnects: int
    worst: tuple[ConnectionSummary, ...]
    recent: tuple[FleetTransition, ...]
    endpoints: tuple[EndpointStatus, ...] = ()


class TransitionRate:
    """Events counted over a sliding window, in buckets of ``resolution`` seconds.

    Memory is at most ``window / resolution + 1`` buckets, whatever the rate.
    Times must not go backwards (use ``anyio.current_time()``).  The window is
    resolved to whole buckets: an event counts while its bucket is one of the
    latest ``ceil(window / resolution)``.
    """

    __slots__ = ("_buckets", "_span", "resolution", "window")

    def __init__(self, window: float = 60.0, resolution: float = 1.0) -> None:
        if not (window > 0 and resolution > 0 and math.isfinite(window)):
            raise ConfigError(
                "window", f"window and resolution must be positive, got {window}, {resolution}"
            )
        self.window = window
        self.resolution = resolution
        self._span = math.ceil(window / resolution)
        self._buckets: deque[list[int]] = deque()  # [bucket index, count], oldest first

    def add(self, now: float, count: int = 1) -> None:
        """Count ``count`` events at ``now``."""
        index = math.floor(now / self.resolution)
        buckets = self._buckets
        if buckets and buckets[-1][0] == index:
            buckets[-1][1] += count
        else:
            buckets.append([index, count])
        self._prune(index)

    def count(self, now: float) -> int:
        """Events in the window ending at ``now``."""
        self._prune(math.floor(now / self.resolution))
        return sum(count for _, count in self._buckets)

    def per_minute(self, now: float) -> float:
        """Events in the window ending at ``now``, scaled to one minute."""
        return self.count(now) * 60.0 / self.window

    def _prune(self, index: int) -> None:
        buckets = self._buckets
        while buckets and buckets[0][0] <= index - self._span:
            buckets.popleft()


def summarize(
    members: Iterable[tuple[str, Stats, str | None]],
    *,
    at: float,
    states: Mapping[str, StateSpec],
    counts: Mapping[str, int],
    crashed: int,
    transitions_total: int,
    transitions_per_minute: float,
    recent: Iterable[FleetTransition],
    worst: int,
    endpoints: tuple[EndpointStatus, ...] = (),
) -> FleetStats:
    """Aggregate ``members`` (key, stats, crash) into a :class:`FleetStats`.

    ``counts`` are the members per state (crashed ones excluded), kept by the
    fleet as transitions happen; ``states`` is the spec's table, which orders
    them and ranks the worst members by their state's log level.
    """
    failures: Counter[str] = Counter()
    totals = Counter[str]()
    reconnects = 0
    candidates: list[tuple[tuple[bool, int, int, float], ConnectionSummary]] = []
    connections = 0
    for key, stats, crash in members:
        connections += 1
        failures.update(stats.failures)
        totals.update(stats.counts())
        reconnects += stats.reconnects
        state = states[stats.state]
        well = state.success or state.final
        if crash is None and well and stats.consecutive_failures == 0:
            continue
        rank = (
            crash is not None,
            _severity(state),
            stats.consecutive_failures,
            stats.time_in_state,
        )
        candidates.append(
            (
                rank,
                ConnectionSummary(
                    key=key,
                    state=stats.state,
                    consecutive_failures=stats.consecutive_failures,
                    time_in_state=stats.time_in_state,
                    last_error=stats.last_error,
                    crash=crash,
                ),
            )
        )
    ranked = heapq.nlargest(worst, candidates, key=lambda item: item[0])
    return FleetStats(
        at=at,
        connections=connections,
        states={name: counts.get(name, 0) for name in states},
        crashed=crashed,
        transitions_total=transitions_total,
        transitions_per_minute=transitions_per_minute,
        failures=dict(sorted(failures.items())),
        reconnects=reconnects,
        worst=tuple(summary for _, summary in ranked),
        recent=tuple(recent),
        endpoints=endpoints,
        **{name: totals[name] for name in COUNT_NAMES},
    )


def _severity(state: StateSpec) -> int:
    level = logging.getLevelName(state.log_level)
    return level if isinstance(level, int) else logging.INFO
