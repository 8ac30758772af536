"""Rich renderables and plain-text lines for ``fsm-live fleet``.

Like :mod:`fsm_live.cli.views.connection`, everything is a pure function of data (a
:class:`~fsm_live.fleet.stats.FleetStats` snapshot, what the fleet knows of its
endpoints), so tests render into a ``StringIO`` console of a fixed size and
compare text.  Account keys, endpoints and errors come from configuration and
peers: they are always wrapped in :class:`~rich.text.Text`, never parsed as
markup.

The dashboard (:class:`FleetDashboard`) fits the console it is drawn on: its
height (the lists of worst members and of recent transitions, newest first, are
cut to the rows left) and its width (state names are shortened only when the
row of counts would not fit, each to a label derived from the spec's name and
distinct from every other, see :func:`state_labels`).  No state is known here
by its name: the spec's order and roles (through
:class:`~fsm_live.cli.views.styles.StateStyles`) are all the view reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

import attrs
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fsm_live.cli.views.connection import plain_transition
from fsm_live.cli.views.live import BELOW, ECHO_MARGIN
from fsm_live.cli.views.styles import CRASHED_STYLE, StateStyles
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.endpoint import EndpointStatus
from fsm_live.diagnostics.units import duration
from fsm_live.fleet.stats import FleetStats

__all__ = (
    "CLOSED",
    "CLOSING",
    "RUNNING",
    "EndpointStatus",
    "FleetDashboard",
    "Phase",
    "endpoint_lines",
    "fleet_panel",
    "key_column",
    "plain_fleet_transition",
    "plain_summary",
    "recent_transitions",
    "state_counts",
    "state_labels",
    "worst_table",
)

#: What the run is doing, shown in the dashboard's title: the fleet runs, closes
#: its members (``--duration`` elapsed, Ctrl-C or SIGTERM), or has closed them all
#: (the last frame).  These are the command's phases, not states of the spec.
Phase = Literal["running", "closing", "closed"]
RUNNING: Final[Phase] = "running"
CLOSING: Final[Phase] = "closing"
CLOSED: Final[Phase] = "closed"

#: The widest key column of the plain lines: a longer key is cut (head…tail).
KEY_COLUMN_MAX: Final = 24
#: The label of the plain summary lines, in the key column.
_SUMMARY: Final = "summary"

#: The column of members that crashed (no state of the spec); its label is fixed.
_CRASHED: Final = "crashed"
#: The shortest label a state name is cut to (two letters, "…", one letter).
_MIN_LABEL: Final = 4
#: Spaces between two columns of the counts.
_GAP: Final = 2
#: The fewest characters of an endpoint's name shown when its line is too long.
_MIN_ENDPOINT: Final = 12
#: Endpoints listed one per line; the others are summed up in one more line.
_ENDPOINT_LINES: Final = 3
#: Lines of the dashboard that are not rows of its two lists: the blank line, the
#: "worst" title, the blank line and the "recent" title.
_SECTION_LINES: Final = 4


def key_column(keys: Iterable[str]) -> int:
    """The width of the plain lines' key column for a fleet of ``keys``: its longest
    key, at most :data:`KEY_COLUMN_MAX`, and at least the summary lines' label, so that
    every line's time is in one column."""
    return max(len(_SUMMARY), min(KEY_COLUMN_MAX, max(map(len, keys), default=0)))


def _in_column(label: str, width: int) -> str:
    """``label`` padded to ``width``, or cut to it head…tail (0: as it is)."""
    if not width:
        return label
    return _shorten(label, width, width // 3).ljust(width)


def plain_fleet_transition(
    key: str, record: TransitionRecord, started_at: float, key_width: int = 0
) -> str:
    """One line for a member's transition: the key (in a column ``key_width`` wide,
    :func:`key_column`; 0: as it is), then :func:`plain_transition`."""
    return f"{_in_column(key, key_width)} {plain_transition(record, started_at)}"


def plain_summary(stats: FleetStats, started_at: float, key_width: int = 0) -> str:
    """One line with the fleet's figures (states with members, rate, failures,
    traffic), its label in the key column ``key_width`` wide (0: as it is)."""
    states = ", ".join(f"{name} {count}" for name, count in stats.states.items() if count)
    failures = ", ".join(f"{name} {count}" for name, count in stats.failures.items())
    return (
        f"{_in_column(_SUMMARY, key_width)} {stats.at - started_at:9.3f}s  "
        f"{stats.connections} connections: "
        f"{states or 'none'}; {stats.crashed} crashed; "
        f"{stats.transitions_total} transitions ({stats.transitions_per_minute:g}/min); "
        f"failures: {failures or 'none'}; "
        f"heartbeats {stats.heartbeats_acked}/{stats.heartbeats_sent} acked; "
        f"messages {stats.messages_in} in, {stats.messages_out} out"
    )


# -- the counts: one column per state, labels that fit ------------------------------------


def _shorten(name: str, width: int, tail: int) -> str:
    if len(name) <= width:
        return name
    head = width - 1 - tail
    return name[:head] + "…" + (name[-tail:] if tail else "")


def state_labels(names: Sequence[str], width: int) -> dict[str, str] | None:
    """A label of at most ``width`` characters for each of ``names``, all distinct.

    A name that fits is its own label.  A longer one keeps its head and its tail
    around an ellipsis, so that names sharing a stem stay apart: at 8 characters
    ``CONNECTING``, ``CONNECTED`` and ``RECONNECTING`` read ``CONN…ING``,
    ``CONN…TED`` and ``RECO…ING``.  The split is tried from the balanced one
    outwards, the first that keeps every label distinct wins.  Returns None when
    no split does (widen ``width``); ``width`` below 4 counts as 4.
    """
    width = max(width, _MIN_LABEL)
    balanced = (width - 1) // 2
    for tail in sorted(range(width - 1), key=lambda t: (abs(t - balanced), -t)):
        labels = {name: _shorten(name, width, tail) for name in names}
        if len(set(labels.values())) == len(labels):
            return labels
    return None


def _fitted_labels(columns: Sequence[tuple[str, int]], width: int) -> tuple[dict[str, str], int]:
    """Labels for the counts' columns (name, count) and the gap between columns, that
    fit in ``width`` columns: the longest labels that fit, with two spaces between
    columns if they still fit, else one.  At the shortest labels that stay distinct,
    whatever the width (the row is then cropped)."""
    names = [name for name, _ in columns]
    longest = max((len(name) for name in names), default=_MIN_LABEL)
    fallback = ({name: name for name in names}, 1)
    for label_width in range(longest, _MIN_LABEL - 1, -1):
        labels = state_labels(names, label_width)
        if labels is None:
            continue
        fallback = (labels, 1)
        cells = sum(max(len(labels[name]), len(str(count))) for name, count in columns)
        for gap in (_GAP, 1):
            if cells + gap * (len(columns) - 1) <= width:
                return labels, gap
    return fallback


def state_counts(
    stats: FleetStats, styles: StateStyles, width: int | None = None
) -> RenderableType:
    """Members per state (every state of the spec, in its order), then crashed members.

    ``width``: the columns the counts may take (None: no limit).  The spec's names
    stay whole: when one row would not hold them, the counts go on a second row;
    only when two rows would not either are they shortened, on one row
    (:func:`state_labels`: head…tail, always distinct).
    """
    columns = [
        *((name, count, styles(name)) for name, count in stats.states.items()),
        (_CRASHED, stats.crashed, CRASHED_STYLE if stats.crashed else ""),
    ]
    names = [(name, count) for name, count, _ in columns]
    if width is None:
        return _counts_row(columns, {name: name for name, _ in names}, _GAP)
    rows = _whole_name_rows(names, width)
    if rows is None or len(rows) > _COUNT_ROWS:
        labels, gap = _fitted_labels(names, width)
        return _counts_row(columns, labels, gap)
    whole = {name: name for name, _ in names}
    tables: list[RenderableType] = []
    start = 0
    for size in rows:
        tables.append(_counts_row(columns[start : start + size], whole, _GAP))
        start += size
    return tables[0] if len(tables) == 1 else Group(*tables)


#: The most rows the counts take before their names are shortened instead.
_COUNT_ROWS: Final = 2


def _whole_name_rows(columns: Sequence[tuple[str, int]], width: int) -> list[int] | None:
    """How many columns go on each row so that whole names fit ``width``, filling
    rows in order; None if one name alone is wider."""
    rows: list[int] = []
    used = count = 0
    for name, value in columns:
        cell = max(len(name), len(str(value)))
        if cell > width:
            return None
        needed = cell if count == 0 else used + _GAP + cell
        if count and needed > width:
            rows.append(count)
            used, count = cell, 1
        else:
            used, count = needed, count + 1
    if count:
        rows.append(count)
    return rows


def _counts_row(
    columns: Sequence[tuple[str, int, str]], labels: Mapping[str, str], gap: int
) -> Table:
    table = Table(box=None, padding=(0, gap, 0, 0), pad_edge=False, show_edge=False)
    for name, count, style in columns:
        label = labels[name]
        table.add_column(
            Text(label, style=style),
            justify="right",
            no_wrap=True,
            width=max(len(label), len(str(count))),
        )
    table.add_row(*(str(count) for _, count, _ in columns))
    return table


# -- endpoints --------------------------------------------------------------------------


def _endpoint_status(status: EndpointStatus, started_at: float, at: float) -> Text:
    since = f"since {status.since - started_at:.1f} s"
    if status.up:
        text = Text.assemble(("up", "bold green"), f" {since}")
    else:
        text = Text.assemble(("down", "bold red"), f" {since} (for {duration(at - status.since)})")
        if status.probing:
            text.append(", probing", style="yellow")
        elif status.next_probe is not None:
            text.append(f" · next probe in {max(0.0, status.next_probe - at):.1f} s")
    return text


def endpoint_lines(
    endpoints: Sequence[EndpointStatus], started_at: float, at: float, width: int = 80
) -> list[Text]:
    """One line per endpoint, those down first (their outage oldest first), at most
    three, then one line counting the others and how many of them are down; none for
    no endpoint.  ``at``: the time of the snapshot (``FleetStats.at``), for how long
    each has been down.  Each line fits ``width`` columns: the count of members is cut
    first, then a long endpoint, its state last."""
    ordered = sorted(endpoints, key=lambda e: (e.up, e.since, e.endpoint))
    lines = []
    for status in ordered[:_ENDPOINT_LINES]:
        state = _endpoint_status(status, started_at, at)
        room = width - len("endpoint ") - len("  ") - len(state)
        name = _shorten(status.endpoint, max(_MIN_ENDPOINT, room), 0)
        line = Text.assemble(("endpoint ", "bold"), name, "  ", state)
        if status.members:  # the first part cut when the line is too long
            line.append(f" · {status.members} member{'s' if status.members != 1 else ''}")
        lines.append(line)
    rest = ordered[_ENDPOINT_LINES:]
    if rest:
        down = sum(not e.up for e in rest)
        lines.append(
            Text.assemble(
                f"… and {len(rest)} more endpoint{'s' if len(rest) != 1 else ''}: ",
                (f"{down} down", "bold red") if down else ("all up", "green"),
            )
        )
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    return lines


# -- the two lists ------------------------------------------------------------------------


def _cell(text: str, style: str = "") -> Text:
    """A cell that is cut with an ellipsis, never wrapped: a row stays one line."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def worst_table(stats: FleetStats, styles: StateStyles, rows: int | None = None) -> RenderableType:
    """The members that are not well, worst first, at most ``rows`` of them (None: all
    the snapshot holds), or a line saying all are well.  One line per member: a long
    key or error is cut, never wrapped."""
    if not stats.worst:
        return Text("every connection is well", style="green")
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("account", ratio=1, min_width=7)
    table.add_column("state", no_wrap=True)
    table.add_column("failures", justify="right", no_wrap=True)
    table.add_column("in state", justify="right", no_wrap=True)
    table.add_column("last error", ratio=2, min_width=10)
    for member in stats.worst[:rows]:
        if member.crash is not None:
            state = Text("CRASHED", style=CRASHED_STYLE)
        else:
            state = Text(member.state, style=styles(member.state))
        table.add_row(
            _cell(member.key),
            state,
            str(member.consecutive_failures),
            f"{member.time_in_state:.1f} s",
            _cell(member.crash or member.last_error or "-"),
        )
    return table


def recent_transitions(
    stats: FleetStats, started_at: float, styles: StateStyles, rows: int | None = None
) -> RenderableType:
    """The fleet's latest transitions, newest first, at most ``rows`` (None: all the
    snapshot holds); one line each (time since the fleet started, account, edge,
    trigger and reason), coloured by destination."""
    if not stats.recent:
        return Text("(no transitions yet)", style="dim")
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, show_header=False)
    table.add_column("at", justify="right", no_wrap=True)
    table.add_column("account", ratio=1, min_width=7)
    table.add_column("edge", no_wrap=True)
    table.add_column("why", ratio=2, min_width=10)
    for item in list(reversed(stats.recent))[:rows]:
        record = item.record
        style = styles(record.dest)
        reason = f" ({record.reason})" if record.reason else ""
        table.add_row(
            Text(f"{record.at - started_at:.3f}s", style=style),
            _cell(item.key, style),
            Text(f"{record.source} -> {record.dest}", style=style),
            _cell(f"[{record.trigger}]{reason}", style),
        )
    return table


# -- the dashboard ---------------------------------------------------------------------


@attrs.frozen
class FleetDashboard:
    """The live dashboard of ``fsm-live fleet``, fitted to the console it is drawn on.

    From the top: members per state; the endpoints' lines (``endpoints``, when
    given); totals (connections, transitions, failures; heartbeats and messages);
    the worst members; the recent transitions, newest first.  The title names the
    run (``title``), its ``phase`` and how long it has run.

    Size: the frame takes the console's width less two columns (where a terminal
    echoes ``^C``) and at most its height less two lines (the line ``interrupted``
    and the shell's prompt): the last frame stays whole on the screen when the
    command ends (:mod:`fsm_live.cli.views.live`).  The counts, endpoints and
    totals always show; the rows left are shared by the two lists (the worst
    members take at most half), each saying how many rows it shows when it is cut.
    Width: see :func:`state_counts`; long keys and errors are cut with an ellipsis.
    """

    stats: FleetStats
    started_at: float
    title: str
    styles: StateStyles
    phase: Phase = RUNNING
    endpoints: Sequence[EndpointStatus] = ()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        stats = self.stats
        height = options.height if options.height is not None else options.size.height
        width = max(5, options.max_width - ECHO_MARGIN)
        inner = options.update(width=width - 4, height=None)
        head = Group(
            state_counts(stats, self.styles, inner.max_width),
            *endpoint_lines(self.endpoints, self.started_at, stats.at, inner.max_width),
            _totals(stats),
            _traffic(stats),
        )
        rows = height - BELOW - 2 - len(console.render_lines(head, inner, pad=False))
        rows -= _SECTION_LINES + (1 if stats.worst else 0)  # the worst table's header
        parts: list[RenderableType] = [head]
        if rows >= 2 or (rows >= 1 and not stats.worst):
            worst_rows = min(len(stats.worst), max(1, rows // 2)) if stats.worst else 1
            recent_rows = rows - worst_rows
            parts += [
                Text(""),
                _section("worst", worst_rows, len(stats.worst)),
                worst_table(stats, self.styles, worst_rows),
                Text(""),
                _section("recent transitions, newest first", recent_rows, len(stats.recent)),
                recent_transitions(stats, self.started_at, self.styles, recent_rows),
            ]
        yield Panel(
            Group(*parts),
            title=Text(f"{self.title} · {self.phase} {duration(stats.at - self.started_at)}"),
            title_align="left",
            border_style="dim" if self.phase == CLOSED else "",
            width=width,
        )


def _totals(stats: FleetStats) -> Text:
    return Text(
        f"{stats.connections} connections, {stats.transitions_total} transitions "
        f"({stats.transitions_per_minute:g}/min), failures: "
        + (", ".join(f"{k} {v}" for k, v in stats.failures.items()) or "none")
    )


def _traffic(stats: FleetStats) -> Text:
    return Text(
        f"heartbeats {stats.heartbeats_acked}/{stats.heartbeats_sent} acked, "
        f"messages {stats.messages_in} in, {stats.messages_out} out"
    )


def _section(title: str, shown: int, held: int) -> Text:
    text = Text(title, style="bold")
    if shown < held:
        text.append(f" ({shown} of {held})", style="dim")
    return text


def fleet_panel(
    stats: FleetStats,
    started_at: float,
    title: str,
    *,
    styles: StateStyles,
    phase: Phase = RUNNING,
    endpoints: Iterable[EndpointStatus] = (),
) -> FleetDashboard:
    """The dashboard for ``stats`` (see :class:`FleetDashboard`)."""
    return FleetDashboard(stats, started_at, title, styles, phase, tuple(endpoints))
