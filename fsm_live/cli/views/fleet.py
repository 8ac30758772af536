"""Rich renderables and plain-text lines for ``fsm-live fleet``.

Like :mod:`fsm_live.cli.views.connection`, everything is a pure function of data (a
:class:`~fsm_live.fleet.stats.FleetStats` snapshot), so tests render into a
``StringIO`` console at a fixed width and compare text.  Account keys and
errors come from configuration and peers: they are always wrapped in
:class:`~rich.text.Text`, never parsed as markup.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fsm_live.cli.views.connection import plain_transition
from fsm_live.cli.views.styles import CRASHED_STYLE, StateStyles
from fsm_live.core.effects import TransitionRecord
from fsm_live.fleet.stats import FleetStats

__all__ = (
    "fleet_panel",
    "plain_fleet_transition",
    "plain_summary",
    "recent_transitions",
    "state_counts",
    "worst_table",
)


def plain_fleet_transition(key: str, record: TransitionRecord, started_at: float) -> str:
    """One line for a member's transition: the key, then :func:`plain_transition`."""
    return f"{key} {plain_transition(record, started_at)}"


def plain_summary(stats: FleetStats, started_at: float) -> str:
    """One line with the fleet's figures (states with members, rate, failures, traffic)."""
    states = ", ".join(f"{name} {count}" for name, count in stats.states.items() if count)
    failures = ", ".join(f"{name} {count}" for name, count in stats.failures.items())
    return (
        f"summary {stats.at - started_at:9.3f}s  {stats.connections} connections: "
        f"{states or 'none'}; {stats.crashed} crashed; "
        f"{stats.transitions_total} transitions ({stats.transitions_per_minute:g}/min); "
        f"failures: {failures or 'none'}; "
        f"heartbeats {stats.heartbeats_acked}/{stats.heartbeats_sent} acked; "
        f"messages {stats.messages_in} in, {stats.messages_out} out"
    )


def state_counts(stats: FleetStats, styles: StateStyles) -> Table:
    """Members per state (every state of the spec), then crashed members."""
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for name in stats.states:
        table.add_column(Text(name, style=styles(name)), justify="right")
    table.add_column(Text("crashed", style=CRASHED_STYLE if stats.crashed else ""), justify="right")
    table.add_row(*(str(count) for count in stats.states.values()), str(stats.crashed))
    return table


def worst_table(stats: FleetStats, styles: StateStyles) -> RenderableType:
    """The members that are not well, worst first (or a line saying all are well)."""
    if not stats.worst:
        return Text("every connection is well", style="green")
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("account", "state", "failures", "in state", "last error"):
        table.add_column(column, justify="right" if column in ("failures", "in state") else "left")
    for member in stats.worst:
        if member.crash is not None:
            state = Text("CRASHED", style=CRASHED_STYLE)
        else:
            state = Text(member.state, style=styles(member.state))
        table.add_row(
            Text(member.key),
            state,
            str(member.consecutive_failures),
            f"{member.time_in_state:.1f} s",
            Text(member.crash or member.last_error or "-"),
        )
    return table


def recent_transitions(stats: FleetStats, started_at: float, styles: StateStyles) -> Text:
    """The fleet's latest transitions, one line each, coloured by destination."""
    text = Text()
    for item in stats.recent:
        text.append(
            plain_fleet_transition(item.key, item.record, started_at) + "\n",
            style=styles(item.record.dest),
        )
    return text or Text("(no transitions yet)")


def fleet_panel(
    stats: FleetStats, started_at: float, title: str, *, styles: StateStyles
) -> RenderableType:
    """The live dashboard of ``fsm-live fleet``: counts, totals (connections,
    transitions, failures; heartbeats and messages), the worst members, recent
    transitions."""
    totals = Text(
        f"{stats.connections} connections, {stats.transitions_total} transitions "
        f"({stats.transitions_per_minute:g}/min), failures: "
        + (", ".join(f"{k} {v}" for k, v in stats.failures.items()) or "none")
    )
    traffic = Text(
        f"heartbeats {stats.heartbeats_acked}/{stats.heartbeats_sent} acked, "
        f"messages {stats.messages_in} in, {stats.messages_out} out"
    )
    return Panel(
        Group(
            state_counts(stats, styles),
            Text(""),
            totals,
            traffic,
            Text(""),
            Text("worst", style="bold"),
            worst_table(stats, styles),
            Text(""),
            Text("recent", style="bold"),
            recent_transitions(stats, started_at, styles),
        ),
        title=Text(title),
        title_align="left",
    )
