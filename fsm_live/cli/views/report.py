"""The terminal view of ``fsm-live report``: rich renderables, pure functions of reports.

On a terminal they are drawn in colour; into a pipe or a file the same tables
come out as plain text (no escape codes).  Tests render them into a
``StringIO`` console at a fixed width and compare text.  Connection names come
from file names: they are always wrapped in :class:`~rich.text.Text`, never
parsed as markup.  States are styled by their role in the spec (success,
failed, final), not by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fsm_live.cli.views.styles import StateStyles
from fsm_live.diagnostics.percentiles import Percentiles
from fsm_live.diagnostics.report import (
    ConnectionReport,
    edge_counts,
    failures_over_time,
    worst_first,
)
from fsm_live.diagnostics.units import duration, share
from fsm_live.spec import Spec

__all__ = ("figures_table", "report_view", "sparkline")

_BARS = " ▁▂▃▄▅▆▇█"
_EDGE_BAR = 20  # characters of the longest edge bar


def sparkline(counts: Sequence[int]) -> str:
    """One character per count, its height relative to the largest (blank for 0)."""
    top = max(counts, default=0)
    if top == 0:
        return " " * len(counts)
    return "".join(_BARS[0] if n == 0 else _BARS[max(1, round(n / top * 8))] for n in counts)


def _rtt(figures: Percentiles) -> str:
    if not figures.count:
        return "no round trips recorded"
    return (
        f"RTT p50 {duration(figures.p50)}, p95 {duration(figures.p95)}, "
        f"p99 {duration(figures.p99)} ({figures.count})"
    )


def _failures(report: ConnectionReport) -> str:
    failures = report.failures
    if failures is None:
        return "not recorded (no stats records in the trace)"
    return ", ".join(f"{name} {count}" for name, count in failures.items()) or "none"


def figures_table(spec: Spec, report: ConnectionReport) -> Table:
    """The report's headline figures, one per row."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    success = "/".join(s for s in spec.states if spec.states[s].success)
    back = report.time_back
    rows: list[tuple[str, str | Text]] = [
        (
            "availability",
            f"{share(report.availability)} of {duration(report.observed)} in {success}",
        ),
        (
            "reconnects",
            f"{report.reconnects} ({_per_hour(report.reconnects_per_hour)}); "
            f"time back p50 {duration(back.p50)}, p95 {duration(back.p95)} "
            f"({back.count} back, {report.unrecovered} not back)",
        ),
        ("failures", _failures(report)),
    ]
    if report.failure_times:
        width, over_time = failures_over_time(report)
        for name, counts in over_time.items():
            rows.append(
                (f"  {name} over time", Text(f"|{sparkline(counts)}| {duration(width)} a column"))
            )
    totals = report.totals
    if totals is None:
        rows.append(("heartbeats, messages", "not recorded (no stats records in the trace)"))
    else:
        rows += [
            (
                "heartbeats",
                f"{totals.heartbeats_acked}/{totals.heartbeats_sent} acked "
                f"({share(totals.heartbeat_success)}); {_rtt(report.rtt)}",
            ),
            (
                "messages",
                f"{totals.messages_in} in, {totals.messages_out} out, "
                f"{totals.duplicates_dropped} duplicates dropped",
            ),
            (
                "token refreshes",
                f"{totals.token_refreshes}, {totals.token_refresh_failures} "
                f"failed (periodic; an auth failure's refresh is a transition); cookie "
                f"refreshes {totals.cookie_refreshes}",
            ),
            (
                "resources",
                f"at most {totals.tasks_max} tasks awaiting (dials, refreshes, "
                f"handlers: an idle asyncio connection has none) and "
                f"{totals.buffered_max} buffered frames in a connection",
            ),
        ]
    if report.bad_lines:
        rows.append(("unreadable lines", f"{report.bad_lines} (fsm-live verify names them)"))
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else Text(value))
    return table


def _per_hour(rate: float | None) -> str:
    return "- per hour" if rate is None else f"{rate:.1f} per hour"


def states_table(spec: Spec, report: ConnectionReport) -> Table:
    """Time in each state: total, share, complete visits, p50/p95 of a visit."""
    table = Table(box=box.SIMPLE_HEAD, title="time in state", title_justify="left")
    table.add_column("state")
    for name in ("total", "share", "visits", "p50 visit", "p95 visit"):
        table.add_column(name, justify="right")
    styles = StateStyles(spec)
    for state, figures in report.states.items():
        table.add_row(
            Text(state, style=styles(state)),
            duration(figures.total),
            share(figures.share),
            str(figures.visits),
            duration(figures.p50),
            duration(figures.p95),
        )
    return table


def edges_table(spec: Spec, report: ConnectionReport) -> Table:
    """The spec's diagram as its edges, each with how often it was taken."""
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"spec {spec.name!r}: edges taken (fsm-live report --html draws the diagram)",
        title_justify="left",
    )
    table.add_column("from")
    table.add_column("trigger")
    table.add_column("to")
    table.add_column("times", justify="right")
    table.add_column("")
    counts = edge_counts(spec, report)
    top = max((n for _, n in counts), default=0)
    styles = StateStyles(spec)
    for (source, trigger, dest), count in counts:
        bar = "█" * max(1, round(count / top * _EDGE_BAR)) if count else ""
        table.add_row(
            Text(source, style=styles(source)),
            trigger,
            Text(dest, style=styles(dest)),
            str(count),
            Text(bar, style="magenta"),
            style="" if count else "dim",
        )
    return table


def connections_table(spec: Spec, reports: Sequence[ConnectionReport]) -> Table:
    """One row per connection, least available first: how it did."""
    table = Table(
        box=box.SIMPLE_HEAD, title="connections (least available first)", title_justify="left"
    )
    table.add_column("connection", overflow="fold")
    table.add_column("runs", justify="right")
    table.add_column("ended in")
    table.add_column("observed", justify="right")
    table.add_column("available", justify="right")
    table.add_column("reconnects", justify="right")
    table.add_column("back p50/p95", justify="right")
    table.add_column("failures")
    styles = StateStyles(spec)
    for report in worst_first(reports):
        back = report.time_back
        table.add_row(
            Text(report.name),
            str(report.runs),
            Text(report.ended_in or "-", style=styles(report.ended_in or "")),
            duration(report.observed),
            share(report.availability),
            str(report.reconnects),
            f"{duration(back.p50)} / {duration(back.p95)}" if back.count else "-",
            Text(_failures(report) if report.totals is not None else "-"),
        )
    return table


def traffic_table(reports: Sequence[ConnectionReport]) -> Table:
    """One row per connection, in the order of :func:`connections_table`: its traffic."""
    table = Table(box=box.SIMPLE_HEAD, title="traffic", title_justify="left")
    table.add_column("connection", overflow="fold")
    table.add_column("heartbeats acked", justify="right")
    table.add_column("RTT p50/p95/p99", justify="right")
    table.add_column("messages in/out", justify="right")
    table.add_column("duplicates", justify="right")
    table.add_column("token refreshes (failed)", justify="right")
    for report in worst_first(reports):
        totals = report.totals
        if totals is None:
            table.add_row(Text(report.name), "-", "-", "-", "-", "-")
            continue
        rtt = report.rtt
        table.add_row(
            Text(report.name),
            f"{totals.heartbeats_acked}/{totals.heartbeats_sent}",
            " / ".join(duration(x) for x in (rtt.p50, rtt.p95, rtt.p99)) if rtt.count else "-",
            f"{totals.messages_in}/{totals.messages_out}",
            str(totals.duplicates_dropped),
            f"{totals.token_refreshes} ({totals.token_refresh_failures})",
        )
    return table


def report_view(
    spec: Spec, reports: Sequence[ConnectionReport], everything: ConnectionReport
) -> RenderableType:
    """The whole report: a title, the figures of all connections, time in state, the
    edges taken, and (for more than one connection) a row per connection."""
    title = Text(
        f"fsm-live report: {everything.connections} connection"
        f"{'' if everything.connections == 1 else 's'}, {everything.runs} run"
        f"{'' if everything.runs == 1 else 's'}, {duration(everything.observed)} "
        f"observed (spec {spec.name!r})",
        style="bold",
    )
    parts: list[RenderableType] = [
        title,
        Text(""),
        figures_table(spec, everything),
        Text(""),
        states_table(spec, everything),
        edges_table(spec, everything),
    ]
    if len(reports) > 1:
        parts += [connections_table(spec, reports), traffic_table(reports)]
    return Group(*parts)
