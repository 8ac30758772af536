"""prometheus-client collectors of a connection or a fleet, read at scrape time.

Register one on a ``CollectorRegistry`` (:func:`new_registry` gives one with the
process collector) and serve the registry (:class:`~fsm_live.metrics.server.MetricsServer`,
or your own endpoint).  Families (``{labels}``; ``connection`` only with
per-connection labels):

=====================================  =========  =========================================
``fsm_live_connections``               gauge      connections per ``state`` (every state)
``fsm_live_transitions_total``         counter    transitions by ``source``, ``dest``, ``trigger``
``fsm_live_failures_total``            counter    failures by ``error_class``
``fsm_live_reconnect_attempts_total``  counter    reconnect attempts (``Stats.reconnects``)
``fsm_live_heartbeat_rtt_seconds``     histogram  heartbeat round trips since registered
``fsm_live_<count>_total``             counter    one per count of :class:`fsm_live.counters.Counts`
                                                  (:func:`~fsm_live.counters.metric_name`:
                                                  ``messages_received``, ``messages_sent``,
                                                  ``duplicates_dropped``, ``heartbeats_sent`` ...)
``fsm_live_send_buffer_frames``        gauge      frames live in the delivery ledgers
``fsm_live_tasks``                     gauge      jobs alive
=====================================  =========  =========================================

Nothing is counted on the hot path: a scrape calls ``stats()`` of each
connection (the counters a connection keeps anyway).  Only the round-trip
histogram is fed as acks arrive (one bisection per heartbeat ack, through
:meth:`~fsm_live.connection.LiveConnection.on_heartbeat_ack`), and only once a
collector is created.

Threads: :func:`~fsm_live.metrics.server.serve_metrics` answers scrapes on the
event loop itself, so a collector reads ``stats()`` there at once.  A scrape from
another thread (prometheus-client's ``start_http_server``, a WSGI server of your
own) is run on the loop the collector was created on
(``anyio.from_thread.run_sync``) and waits for it: create collectors in async code
on that loop.  A collector created outside an event loop collects in whatever
thread scrapes.  Requires prometheus-client (``pip install 'fsm_live[metrics]'``):
otherwise creating a collector raises :class:`~fsm_live.errors.MissingExtra`.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.from_thread
import anyio.lowlevel
import sniffio

from fsm_live.core.effects import TransitionRecord
from fsm_live.counters import COUNT_NAMES, describe, metric_name
from fsm_live.errors import MissingExtra
from fsm_live.metrics.histogram import RTT_BUCKETS, RttHistogram
from fsm_live.metrics.snapshot import CounterFigures, Figures, counters_of

if TYPE_CHECKING:  # prometheus-client is the `metrics` extra: at run time, require_prometheus()
    from prometheus_client.metrics_core import Metric

    from fsm_live.connection import LiveConnection
    from fsm_live.fleet import Fleet

__all__ = ("ConnectionCollector", "FleetCollector", "families", "require_prometheus")

T = TypeVar("T")


def require_prometheus() -> ModuleType:
    """``prometheus_client.core``; raises :class:`MissingExtra` (one line: what to
    install) when prometheus-client is not installed."""
    try:
        return importlib.import_module("prometheus_client.core")
    except ImportError:
        raise MissingExtra(
            "metrics need prometheus-client: pip install 'fsm_live[metrics]'"
        ) from None


class _Loop:
    """Runs a function on the event loop the collector was created on."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        try:
            sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            self.token: Any = None
        else:
            self.token = anyio.lowlevel.current_token()

    def run(self, function: Callable[[], T]) -> T:
        if self.token is None or threading.get_ident() == self.thread:
            return function()
        return anyio.from_thread.run_sync(function, token=self.token)


def families(
    label_names: Sequence[str],
    figures: Iterable[tuple[Sequence[str], Figures]],
    rtts: Iterable[tuple[Sequence[str], RttHistogram]],
) -> list[Metric]:
    """The metric families of ``figures`` and ``rtts``, each given with its label
    values (for ``label_names``)."""
    core = require_prometheus()
    names = list(label_names)
    connections = core.GaugeMetricFamily(
        "fsm_live_connections", "Connections per lifecycle state.", labels=[*names, "state"]
    )
    transitions = core.CounterMetricFamily(
        "fsm_live_transitions_total",
        "Lifecycle transitions taken, by edge.",
        labels=[*names, "source", "dest", "trigger"],
    )
    failures = core.CounterMetricFamily(
        "fsm_live_failures_total",
        "Failures, by error class of the spec.",
        labels=[*names, "error_class"],
    )
    reconnects = core.CounterMetricFamily(
        "fsm_live_reconnect_attempts_total", "Reconnect attempts.", labels=names
    )
    counts = {
        name: core.CounterMetricFamily(
            metric_name(name), describe(name).capitalize() + ".", labels=names
        )
        for name in COUNT_NAMES
    }
    buffered = core.GaugeMetricFamily(
        "fsm_live_send_buffer_frames", "Frames waiting in send buffers.", labels=names
    )
    tasks = core.GaugeMetricFamily("fsm_live_tasks", "Jobs alive.", labels=names)
    rtt = core.HistogramMetricFamily(
        "fsm_live_heartbeat_rtt_seconds", "Heartbeat round trips.", labels=names
    )
    for values, figure in figures:
        labels = list(values)
        for state, count in figure.states.items():
            connections.add_metric([*labels, state], count)
        counters = figure.counters
        for (source, trigger, dest), count in sorted(counters.transitions.items()):
            transitions.add_metric([*labels, source, dest, trigger], count)
        for error_class, count in sorted(counters.failures.items()):
            failures.add_metric([*labels, error_class], count)
        reconnects.add_metric(labels, counters.reconnects)
        for name, family in counts.items():
            family.add_metric(labels, getattr(counters, name))
        buffered.add_metric(labels, figure.buffered)
        tasks.add_metric(labels, figure.tasks)
    for values, histogram in rtts:
        rtt.add_metric(list(values), histogram.cumulative(), histogram.sum)
    return [
        connections,
        transitions,
        failures,
        reconnects,
        rtt,
        *counts.values(),
        buffered,
        tasks,
    ]


class ConnectionCollector:
    """The metrics of one :class:`~fsm_live.connection.LiveConnection`.

    ``name``: a ``connection`` label with this value on every sample (None, the
    default: no label).  ``buckets``: upper bounds of the round-trip histogram in
    seconds.  See the module docstring for the families and threads.
    """

    def __init__(
        self,
        connection: LiveConnection,
        *,
        name: str | None = None,
        buckets: Sequence[float] = RTT_BUCKETS,
    ) -> None:
        require_prometheus()
        self.connection = connection
        self._labels = () if name is None else (name,)
        self._rtt = RttHistogram(buckets)
        self._loop = _Loop()
        connection.on_heartbeat_ack(self._acked)

    def _acked(self, at: float, rtt: float) -> None:
        self._rtt.observe(rtt)

    def _figures(self) -> Figures:
        figures = Figures.empty(self.connection.spec.states)
        figures.add_live(self.connection.stats())
        return figures

    def collect(self) -> list[Metric]:
        """The families now (prometheus-client calls this at every scrape)."""
        figures = self._loop.run(self._figures)
        names = ("connection",) if self._labels else ()
        return families(names, [(self._labels, figures)], [(self._labels, self._rtt)])

    def describe(self) -> list[Metric]:
        """The families, without reading the connection (for registering)."""
        names = ("connection",) if self._labels else ()
        return families(names, [], [])


class FleetCollector:
    """The metrics of a :class:`~fsm_live.fleet.Fleet`, added up over its members.

    Counters stay monotonic as members come and go: a member that reaches a final
    state (closed, removed, replaced) has its counters kept in the totals, and
    members added later are watched from their first transition.  With
    ``per_connection=True`` every member gets its own series, labelled
    ``connection=KEY`` (a removed member's series end with it); off by default,
    to keep the number of series bounded by the spec, not by the fleet.
    Counting starts when the collector is created.
    """

    def __init__(
        self, fleet: Fleet, *, per_connection: bool = False, buckets: Sequence[float] = RTT_BUCKETS
    ) -> None:
        require_prometheus()
        self.fleet = fleet
        self.per_connection = per_connection
        self._buckets = tuple(buckets)
        self._rtt = RttHistogram(buckets)  # every member's, when not per connection
        self._rtts: dict[str, RttHistogram] = {}  # per member key, when per connection
        self._retired = CounterFigures()  # members in a final state
        self._watched: set[int] = set()  # id() of the connections with an ack observer
        self._final = frozenset(name for name, state in fleet.machine.states.items() if state.final)
        self._loop = _Loop()
        fleet.on_transition(self._transition)
        for key in fleet:
            connection = fleet[key]
            if connection.state in self._final:
                self._retired.add(counters_of(connection.stats()))
            else:
                self._watch(key, connection)

    def _watch(self, key: str, connection: LiveConnection) -> None:
        if id(connection) not in self._watched:
            self._watched.add(id(connection))
            connection.on_heartbeat_ack(functools.partial(self._acked, key))

    def _acked(self, key: str, at: float, rtt: float) -> None:
        if self.per_connection:
            histogram = self._rtts.get(key)
            if histogram is None:
                histogram = self._rtts[key] = RttHistogram(self._buckets)
            histogram.observe(rtt)
        else:
            self._rtt.observe(rtt)

    def _transition(self, key: str, record: TransitionRecord) -> None:
        try:
            connection = self.fleet[key]
        except KeyError:
            return
        if record.dest in self._final:
            self._watched.discard(id(connection))
            self._retired.add(counters_of(connection.stats()))
        else:
            self._watch(key, connection)

    def _figures(self) -> list[tuple[tuple[str, ...], Figures]]:
        fleet = self.fleet
        states = fleet.machine.states
        if self.per_connection:
            result: list[tuple[tuple[str, ...], Figures]] = []
            for key in fleet:
                figures = Figures.empty(states)
                figures.add_live(fleet[key].stats())
                result.append(((key,), figures))
            for gone in set(self._rtts) - set(fleet.keys()):
                del self._rtts[gone]
            return result
        total = Figures({state: fleet.count(state) for state in states})
        total.counters.add(self._retired)
        for key in fleet:
            connection = fleet[key]
            if connection.state not in self._final:
                stats = connection.stats()
                total.counters.add(counters_of(stats))
                total.buffered += stats.buffered
                total.tasks += stats.tasks_alive
        return [((), total)]

    def collect(self) -> list[Metric]:
        """The families now (prometheus-client calls this at every scrape)."""
        figures = self._loop.run(self._figures)
        if self.per_connection:
            return families(
                ("connection",),
                figures,
                [
                    ((key,), self._rtts.get(key) or RttHistogram(self._buckets))
                    for (key,), _ in figures
                ],
            )
        return families((), figures, [((), self._rtt)])

    def describe(self) -> list[Metric]:
        """The families, without reading the fleet (for registering)."""
        return families(("connection",) if self.per_connection else (), [], [])
