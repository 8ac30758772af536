"""How ``fsm-live demo`` looks: a live panel on a terminal, plain lines otherwise.

Pure functions of data (stats snapshots, transition records, demo events, the
summary), so tests render them into a ``StringIO`` console and compare text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fsm_live._runtime.stats import Stats
from fsm_live.cli.views.connection import plain_transition, stats_table
from fsm_live.cli.views.styles import StateStyles
from fsm_live.core.effects import TransitionRecord
from fsm_live.demo import DemoEvent, DemoReport, DemoSummary

__all__ = ("demo_panel", "plain_event", "summary_lines", "summary_tables")

_MARKS: Final = {"step": "==", "fault": "!!", "note": "--"}
_EVENT_STYLES: Final = {"step": "bold", "fault": "bold magenta", "note": "italic"}


def plain_event(event: DemoEvent) -> str:
    """One line for a story event, aligned with
    :func:`~fsm_live.cli.views.connection.plain_transition`."""
    return f"{event.at:9.3f}s  {_MARKS.get(event.kind, '--')} {event.text}"


def _line(item: TransitionRecord | DemoEvent, started_at: float, styles: StateStyles) -> Text:
    if isinstance(item, DemoEvent):
        return Text(plain_event(item), style=_EVENT_STYLES.get(item.kind, ""))
    return Text(plain_transition(item, started_at), style=styles(item.dest))


def demo_panel(
    stats: Stats,
    timeline: Iterable[TransitionRecord | DemoEvent],
    started_at: float,
    elapsed: float,
    duration: float,
    messages_taken: int = 0,
    *,
    styles: StateStyles,
) -> RenderableType:
    """The live view: the state and counters (and the messages the application
    took), then the latest transitions and events (one line each, cut with an
    ellipsis rather than wrapped)."""
    lines = Text("\n").join(_line(item, started_at, styles) for item in timeline)
    lines.no_wrap, lines.overflow = True, "ellipsis"
    counters = stats_table(stats, styles=styles)
    counters.add_row("application", f"{messages_taken} messages taken")
    return Panel(
        Group(counters, Text(""), lines or Text("(starting)")),
        title=f"fsm-live demo  {elapsed:5.1f} s / {duration:g} s",
        title_align="left",
    )


def _edge_rows(summary: DemoSummary) -> list[tuple[str, str]]:
    return [
        (f"{src} -> {dest} [{trigger}]", str(count))
        for (src, trigger, dest), count in sorted(summary.edges.items(), key=lambda item: -item[1])
    ]


def _figure_rows(report: DemoReport) -> list[tuple[str, str]]:
    stats, server = report.summary.stats, report.server
    rtt = "-" if stats.heartbeat_rtt is None else f"{stats.heartbeat_rtt * 1000:.1f} ms"
    return [
        ("transitions", str(len(report.summary.records))),
        (
            "states visited",
            f"{len(report.summary.states_visited)}: {', '.join(report.summary.states_visited)}",
        ),
        ("connects", str(stats.connects)),
        (
            "messages in",
            f"{stats.messages_in} (server sent {server.items_sent} items "
            f"in {server.pushes_sent} pushes)",
        ),
        ("messages taken", f"{report.messages_taken} by the application's on_message handler"),
        (
            "duplicates dropped",
            f"{stats.duplicates_dropped} (server re-sent {server.duplicates_sent})",
        ),
        ("messages out", str(stats.messages_out)),
        ("pushes acked", f"{server.acks_received} acks received by the server"),
        (
            "heartbeats",
            f"{stats.heartbeats_acked} acked of {stats.heartbeats_sent} sent, last RTT {rtt}",
        ),
        ("token refreshes", f"{stats.token_refreshes} ({stats.token_refresh_failures} failed)"),
        (
            "registrations",
            f"{server.registrations} accepted, {server.registrations_rejected} refused",
        ),
        ("handshakes", f"{server.handshakes} ({server.handshakes_rejected} rejected)"),
    ]


def _trace_line(report: DemoReport) -> str:
    agree = "yes" if report.summary.agrees else "NO"
    return (
        f"trace: {report.trace} ({len(report.summary.records)} records; "
        f"counts agree with the connection's counters: {agree})"
    )


def summary_lines(report: DemoReport) -> list[str]:
    """The summary as plain text lines (no terminal)."""
    summary = report.summary
    lines = ["", "transitions by edge:"]
    lines += [f"  {count:>4}  {edge}" for edge, count in _edge_rows(summary)]
    lines += ["failures by class:"]
    lines += [f"  {count:>4}  {name}" for name, count in sorted(summary.failures.items())] or [
        "     0"
    ]
    lines += ["figures:"]
    lines += [f"  {name:<19} {value}" for name, value in _figure_rows(report)]
    lines += [_trace_line(report)]
    return lines


def summary_tables(report: DemoReport) -> RenderableType:
    """The summary as rich tables (on a terminal)."""
    edges = Table(title="transitions by edge", title_justify="left")
    edges.add_column("edge")
    edges.add_column("count", justify="right")
    for edge, count in _edge_rows(report.summary):
        edges.add_row(edge, count)
    failures = Table(title="failures by class", title_justify="left")
    failures.add_column("class")
    failures.add_column("count", justify="right")
    for error_class, times in sorted(report.summary.failures.items()):
        failures.add_row(error_class, str(times))
    figures = Table(title="figures", title_justify="left", show_header=False)
    figures.add_column(style="bold")
    figures.add_column()
    for name, value in _figure_rows(report):
        figures.add_row(name, value)
    return Group(edges, failures, figures, Text(_trace_line(report)))
