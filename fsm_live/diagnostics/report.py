"""The figures of ``fsm-live report``: pure functions of a spec and parsed trace records.

:func:`analyze` turns one connection's trace (one file: one run or several one
after the other) into a :class:`ConnectionReport`; :func:`combine` adds reports
up into one for all connections.  A report keeps the raw material (visits,
outages, round trips, failure times) and derives its figures from it, so
combined percentiles are over every value, not averages of percentiles.

Roles come from the spec, never from state names: availability is the share of
observed time spent in the spec's ``success`` states; a reconnect is an edge
into the state the initial state's first transition enters, from any state but
the initial one (:func:`is_reconnect`, what ``Stats.reconnects`` counts); time
back is how long a connection that left a success state (not for a final one)
took to enter one again.  Times are seconds.

What a run observes: from ``t = 0`` (the connection started) to the transition
into a final state, or to its last record if it has none (a run cut short).  A
final state's time is not counted.  Visit percentiles are over complete visits
(the last visit of a run cut short is counted in the state's total only).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import attrs

from fsm_live.counters import Counts, add_up
from fsm_live.diagnostics.percentiles import Percentiles, nice_step, percentile
from fsm_live.diagnostics.records import (
    BadLine,
    FailureRecord,
    Line,
    Record,
    StatsRecord,
    Transition,
)
from fsm_live.spec import Spec

__all__ = (
    "ConnectionReport",
    "StateFigures",
    "Totals",
    "Visit",
    "analyze",
    "combine",
    "dial_state",
    "edge_counts",
    "failures_over_time",
    "is_reconnect",
    "split_runs",
    "states_over_time",
    "worst_first",
)

Edge = tuple[str, str, str]


@attrs.frozen
class Visit:
    """A stay in ``state`` during run ``run`` (0-based), from ``start`` to ``end``
    (seconds since the run started); ``complete`` unless the run was cut short in it."""

    run: int
    state: str
    start: float
    end: float
    complete: bool = True

    @property
    def duration(self) -> float:
        return self.end - self.start


@attrs.frozen(kw_only=True)
class Totals(Counts):
    """The counts of :class:`~fsm_live.counters.Counts` from the stats records: each
    run's last record, added up over runs; ``tasks_max`` and ``buffered_max``: the
    most seen in any stats record."""

    tasks_max: int = 0
    buffered_max: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            tasks_max=max(self.tasks_max, other.tasks_max),
            buffered_max=max(self.buffered_max, other.buffered_max),
            **add_up((self, other)),
        )

    @property
    def heartbeat_success(self) -> float | None:
        """Heartbeats acked per heartbeat sent (None before the first)."""
        return self.heartbeats_acked / self.heartbeats_sent if self.heartbeats_sent else None


@attrs.frozen
class StateFigures:
    """Time in one state: ``total`` seconds, its ``share`` of the observed time, and
    the ``visits`` (complete ones) with the p50/p95 of their durations."""

    total: float
    share: float | None
    visits: int
    p50: float | None
    p95: float | None


@attrs.frozen
class ConnectionReport:
    """One connection's figures (or, from :func:`combine`, several connections')."""

    name: str
    connections: int
    runs: int
    observed: float
    visits: tuple[Visit, ...]
    success_states: frozenset[str]
    state_order: tuple[str, ...]
    reconnects: int
    outages: tuple[float, ...]
    unrecovered: int
    #: ``(run, t, error class)`` of each failure record.
    failure_times: tuple[tuple[int, float, str], ...]
    rtts: tuple[float, ...]
    #: None when the trace has no stats records (transitions only).
    totals: Totals | None
    edges: Mapping[Edge, int] = attrs.field(hash=False)
    ended_in: str | None
    bad_lines: int = 0

    # -- figures ----------------------------------------------------------------------

    @property
    def states(self) -> dict[str, StateFigures]:
        """Time in each state of the spec (final states left out), in spec order."""
        figures = {}
        for state in self.state_order:
            visits = [v for v in self.visits if v.state == state]
            complete = [v.duration for v in visits if v.complete]
            total = sum(v.duration for v in visits)
            figures[state] = StateFigures(
                total=total,
                share=total / self.observed if self.observed > 0 else None,
                visits=len(complete),
                p50=percentile(complete, 50),
                p95=percentile(complete, 95),
            )
        return figures

    @property
    def availability(self) -> float | None:
        """The share of observed time in a success state (None if nothing was observed)."""
        if not self.observed > 0:
            return None
        up = sum(v.duration for v in self.visits if v.state in self.success_states)
        return up / self.observed

    @property
    def reconnects_per_hour(self) -> float | None:
        return self.reconnects / (self.observed / 3600) if self.observed > 0 else None

    @property
    def time_back(self) -> Percentiles:
        """Outages that ended in a success state: how long they took."""
        return Percentiles.of(self.outages)

    @property
    def failures(self) -> dict[str, int] | None:
        """Failures by error class (None without stats records: the trace has no
        failure records either)."""
        if self.totals is None:
            return None
        return dict(sorted(Counter(cls for _, _, cls in self.failure_times).items()))

    @property
    def rtt(self) -> Percentiles:
        """Heartbeat round trips (seconds)."""
        return Percentiles.of(self.rtts)

    @property
    def span(self) -> float:
        """The longest run's end (seconds since its start)."""
        return max((v.end for v in self.visits), default=0.0)


def dial_state(spec: Spec) -> str | None:
    """The state the initial state's first transition enters: where a connection
    dials.  None if the initial state has no way out."""
    first = spec.transitions_from(spec.initial)
    return first[0].dest if first else None


def is_reconnect(spec: Spec, source: str, dest: str) -> bool:
    """True for an edge that starts a reconnect attempt: it enters :func:`dial_state`
    from any state but the initial one (as ``Stats.reconnects`` counts)."""
    return dest == dial_state(spec) and source != spec.initial


def split_runs(records: Iterable[Record], spec: Spec) -> list[list[Record]]:
    """Records grouped by run: a run starts at a transition out of the initial state
    (records before the first transition belong to the first run)."""
    runs: list[list[Record]] = []
    current: list[Record] = []
    seen_transition = False
    for record in records:
        if isinstance(record, Transition) and record.source == spec.initial and seen_transition:
            runs.append(current)
            current = []
        seen_transition = seen_transition or isinstance(record, Transition)
        current.append(record)
    if current:
        runs.append(current)
    return runs


def analyze(name: str, spec: Spec, lines: Iterable[Line]) -> ConnectionReport:
    """The report of one connection's trace ``lines`` (parsed; bad lines are counted
    and skipped).  A lenient reader: :mod:`~fsm_live.diagnostics.verify` says
    whether the trace conforms."""
    items = list(lines)
    records = [item for item in items if not isinstance(item, BadLine)]
    final, success = spec.final_states, spec.success_states
    visits: list[Visit] = []
    outages: list[float] = []
    failures: list[tuple[int, float, str]] = []
    rtts: list[float] = []
    edges: Counter[Edge] = Counter()
    totals: Totals | None = None
    observed = 0.0
    reconnects = unrecovered = 0
    ended_in: str | None = None
    runs = split_runs(records, spec)
    dial = dial_state(spec)
    for index, run in enumerate(runs):
        transitions = [r for r in run if isinstance(r, Transition)]
        stats = [r for r in run if isinstance(r, StatsRecord)]
        failures += [(index, r.t, r.error_class) for r in run if isinstance(r, FailureRecord)]
        for record in stats:
            rtts.extend(record.rtts)
        if stats:
            last = stats[-1]
            run_totals = Totals(
                tasks_max=max(r.tasks_alive for r in stats),
                buffered_max=max(r.buffered for r in stats),
                **last.counts(),
            )
            totals = run_totals if totals is None else totals + run_totals
        if not transitions:
            continue
        start = min(0.0, transitions[0].t)
        last_t = max(r.t for r in run)
        end = transitions[-1].t if transitions[-1].dest in final else max(last_t, transitions[-1].t)
        state, since = transitions[0].source, start
        outage_since: float | None = None
        for transition in transitions:
            visits.append(Visit(index, state, since, transition.t))
            edges[transition.edge] += 1
            if transition.dest == dial and transition.source != spec.initial:
                reconnects += 1
            if transition.dest in success:
                if outage_since is not None:
                    outages.append(transition.t - outage_since)
                outage_since = None
            elif transition.dest in final:
                unrecovered += outage_since is not None
                outage_since = None
            elif transition.source in success:
                outage_since = transition.t
            state, since = transition.dest, transition.t
        if state not in final:
            visits.append(Visit(index, state, since, end, complete=False))
            unrecovered += outage_since is not None
        observed += end - start
        ended_in = state
    return ConnectionReport(
        name=name,
        connections=1,
        runs=len([r for r in runs if any(isinstance(x, Transition) for x in r)]),
        observed=observed,
        visits=tuple(visits),
        success_states=success,
        state_order=tuple(s for s in spec.states if s not in final),
        reconnects=reconnects,
        outages=tuple(outages),
        unrecovered=unrecovered,
        failure_times=tuple(failures),
        rtts=tuple(rtts),
        totals=totals,
        edges=dict(edges),
        ended_in=ended_in,
        bad_lines=sum(isinstance(item, BadLine) for item in items),
    )


def combine(reports: Sequence[ConnectionReport], name: str = "all") -> ConnectionReport:
    """One report for all of ``reports`` (their connections, runs and time added up)."""
    edges: Counter[Edge] = Counter()
    totals: Totals | None = None
    for report in reports:
        edges.update(report.edges)
        if report.totals is not None:
            totals = report.totals if totals is None else totals + report.totals
    first = reports[0] if reports else None
    return ConnectionReport(
        name=name,
        connections=sum(r.connections for r in reports),
        runs=sum(r.runs for r in reports),
        observed=sum(r.observed for r in reports),
        visits=tuple(v for r in reports for v in r.visits),
        success_states=first.success_states if first else frozenset(),
        state_order=first.state_order if first else (),
        reconnects=sum(r.reconnects for r in reports),
        outages=tuple(o for r in reports for o in r.outages),
        unrecovered=sum(r.unrecovered for r in reports),
        failure_times=tuple(f for r in reports for f in r.failure_times),
        rtts=tuple(x for r in reports for x in r.rtts),
        totals=totals,
        edges=dict(edges),
        ended_in=None,
        bad_lines=sum(r.bad_lines for r in reports),
    )


def failures_over_time(
    report: ConnectionReport, bins: int = 20
) -> tuple[float, dict[str, list[int]]]:
    """Failures by class in bins of a nice width over the report's span: ``(width,
    {class: counts})``; bin ``i`` covers ``[i * width, (i + 1) * width)`` seconds
    since each run started."""
    span = max(report.span, max((t for _, t, _ in report.failure_times), default=0.0))
    width = nice_step(span, bins)
    count = max(1, math.ceil(span / width)) if span > 0 else 1
    counts: dict[str, list[int]] = {}
    for _, t, cls in sorted(report.failure_times, key=lambda f: f[2]):
        row = counts.setdefault(cls, [0] * count)
        row[min(count - 1, int(t // width))] += 1
    return width, counts


def worst_first(reports: Sequence[ConnectionReport]) -> list[ConnectionReport]:
    """``reports`` least available first (those with no observed time last), then by
    name: the order of every per-connection list of the report."""
    return sorted(
        reports, key=lambda r: (r.availability if r.availability is not None else 2.0, r.name)
    )


def states_over_time(
    report: ConnectionReport, samples: int = 300
) -> tuple[list[float], dict[str, list[int]]]:
    """Runs in each state over time: ``(times, {state: counts})``, ``samples`` times
    evenly spread over ``[0, report.span]`` (seconds since each run started), each
    state of ``report.state_order`` counting the runs in it at that time (a run in
    no state at a time, ended or not started, counts nowhere).  For a fleet's
    combined report: how many members were up, waiting or failing, moment by moment.
    """
    span = report.span
    if not span > 0 or samples < 2:
        return [], {}
    times = [span * i / (samples - 1) for i in range(samples)]
    counts = {state: [0] * samples for state in report.state_order}
    for visit in report.visits:
        row = counts.get(visit.state)
        if row is None:
            continue
        # Samples in [start, end): the first index at or after start, up to end.
        first = max(0, math.ceil(visit.start / span * (samples - 1)))
        last = min(samples - 1, math.ceil(visit.end / span * (samples - 1)) - 1)
        if visit.end >= span and not visit.complete:
            last = samples - 1
        for index in range(first, last + 1):
            row[index] += 1
    return times, counts


def edge_counts(spec: Spec, report: ConnectionReport) -> list[tuple[Edge, int]]:
    """Every edge of the spec, in table order, with how often it was taken."""
    return [
        ((source, t.trigger, t.dest), report.edges.get((source, t.trigger, t.dest), 0))
        for source, t in spec.edges()
    ]
