"""``fsm-live report --html FILE``: one self-contained page, charts drawn with Plotly.

The page needs no network to open: plotly.js (about 4.8 MB) is inlined once in
its head, and every chart is a Plotly figure rendered into it
(``include_plotlyjs=False`` per figure).  What it shows:

* the figures of all connections (durations as :mod:`~fsm_live.diagnostics.units`
  says them: ``16.7 h``), and a table with one row per connection, least available
  first, folded after :data:`_TABLE_ROWS` rows;
* for several connections, how many were in each state over time (one chart for a
  fleet of any size);
* a timeline of states per connection (and run), least available first, coloured
  by the state's role: rows thinner the more there are (about 1,400 px of rows for
  300), the time axis above and below;
* failures over time, stacked by error class (on the timeline's time axis);
* the distribution of heartbeat round trips, with p50/p95/p99 marked, each label on
  a line of its own;
* the spec's diagram with hot edges: each edge's width and colour grow with how
  often it was taken, and its label says ``trigger (N)``; laid out in pixels by
  :mod:`~fsm_live.diagnostics.diagram_layout`.

Checked by eye in headless Chromium at 1440x900 and 1280x800 with 300 members'
traces; ``tests/test_html_report.py`` checks the page's structure.

Plotly is the ``report`` extra (``pip install 'fsm_live[report]'``);
:func:`require_plotly` raises :class:`~fsm_live.errors.MissingExtra` saying so.
Why Plotly: docs/diagnostics.md.
"""

from __future__ import annotations

import html
import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Final

from fsm_live.diagnostics.diagram_layout import LABEL_FONT, NODE_FONT, layout_diagram
from fsm_live.diagnostics.report import (
    ConnectionReport,
    combine,
    edge_counts,
    failures_over_time,
    states_over_time,
    worst_first,
)
from fsm_live.diagnostics.summary import as_json
from fsm_live.diagnostics.units import duration, share
from fsm_live.errors import MissingExtra
from fsm_live.spec import Spec

__all__ = (
    "diagram_figure",
    "failures_figure",
    "render_html",
    "require_plotly",
    "rtt_figure",
    "states_figure",
    "timeline_figure",
)

_SUCCESS: Final = "#2ca02c"
_FAILED: Final = "#d62728"
_QUIET: Final = "#c7c7c7"
_OTHER: Final = ("#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22")
_CONFIG: Final = {"displaylogo": False, "responsive": True}
# The timeline: rows between 4 and 22 px high, about 1,400 px of rows in all for a
# fleet; room above for the legend and the top time axis, below for the bottom one.
_MIN_ROW: Final = 4.0
_MAX_ROW: Final = 22.0
_TIMELINE_ROWS_HEIGHT: Final = 1400.0
_TIMELINE_TOP: Final = 75
_TIMELINE_BOTTOM: Final = 50
#: The diagram's width (px): it fits a laptop's window beside the page's margins.
_DIAGRAM_WIDTH: Final = 1100
#: Connections listed in the page's table before the others are folded away.
_TABLE_ROWS: Final = 25


def require_plotly() -> ModuleType:
    """``plotly.graph_objects``; raises :class:`MissingExtra` (one line: what to
    install) when Plotly is not installed."""
    try:
        return importlib.import_module("plotly.graph_objects")
    except ImportError:
        raise MissingExtra("--html needs Plotly: pip install 'fsm_live[report]'") from None


def _colours(spec: Spec) -> dict[str, str]:
    """A colour per state by its role: success green, failed red, initial and final
    grey, the others from a palette in spec order."""
    colours = {}
    others = iter(_OTHER * (1 + len(spec.states) // len(_OTHER)))
    for name, state in spec.states.items():
        if state.success:
            colours[name] = _SUCCESS
        elif state.failed:
            colours[name] = _FAILED
        elif state.final or name == spec.initial:
            colours[name] = _QUIET
        else:
            colours[name] = next(others)
    return colours


def _axis_range(everything: ConnectionReport) -> list[float]:
    """The x range every chart over time shares: from 0 to the longest run's end
    (or the last failure), so that the charts line up one under the other."""
    last_failure = max((t for _, t, _ in everything.failure_times), default=0.0)
    return [0.0, max(everything.span, last_failure, 1.0)]


def states_figure(go: Any, spec: Spec, everything: ConnectionReport) -> Any:
    """Members per state over time, stacked (for a fleet: the whole picture in one
    chart, whatever the number of members)."""
    colours = _colours(spec)
    times, counts = states_over_time(everything)
    figure = go.Figure()
    for state, row in counts.items():
        if not any(row):
            continue
        figure.add_trace(
            go.Scatter(
                x=times,
                y=row,
                name=state,
                mode="lines",
                stackgroup="states",
                line={"width": 0.5, "color": colours[state]},
                fillcolor=colours[state],
                hovertemplate=f"{html.escape(state)}: %{{y}} at %{{x:.1f}} s<extra></extra>",
            )
        )
    figure.update_layout(
        height=300,
        margin={"l": 60, "r": 20, "t": 40, "b": 45},
        xaxis={
            "title": {"text": "seconds since each connection started"},
            "range": _axis_range(everything),
        },
        yaxis={"title": {"text": "connections"}, "rangemode": "tozero"},
        legend={
            "orientation": "h",
            "yref": "container",
            "y": 1,
            "yanchor": "top",
            "x": 0,
            "traceorder": "normal",  # spec order, as the timeline's legend
        },
        hovermode="x unified",
    )
    return figure


def _row_names(report: ConnectionReport) -> list[str]:
    return [
        report.name if report.runs == 1 else f"{report.name} (run {run + 1})"
        for run in range(report.runs)
    ]


def timeline_figure(go: Any, spec: Spec, reports: Sequence[ConnectionReport]) -> Any:
    """One row per connection and run, least available first, its visits as bars
    coloured by state.  Rows are 22 px high for a few connections and thinner for
    many (at least 4 px: 300 members take about 1,400 px); the time axis is drawn
    above and below, and the legend sits above the chart, never in a gap."""
    colours = _colours(spec)
    ordered = worst_first(reports)
    rows = [name for report in ordered for name in _row_names(report)]
    by_state: dict[str, dict[str, list[Any]]] = {}
    for report in ordered:
        names = _row_names(report)
        for visit in report.visits:
            data = by_state.setdefault(visit.state, {"y": [], "x": [], "base": [], "text": []})
            data["y"].append(names[visit.run])
            data["x"].append(visit.duration)
            data["base"].append(visit.start)
            data["text"].append(
                f"{names[visit.run]}: {visit.state} from {visit.start:.3f} s to "
                f"{visit.end:.3f} s ({duration(visit.duration)})"
                + ("" if visit.complete else ", cut short")
            )
    figure = go.Figure()
    for state in spec.states:
        if state not in by_state:
            continue
        data = by_state[state]
        figure.add_trace(
            go.Bar(
                orientation="h",
                name=state,
                y=data["y"],
                x=data["x"],
                base=data["base"],
                hovertext=data["text"],
                hoverinfo="text",
                marker={"color": colours[state], "line": {"width": 0}},
            )
        )
    span = _axis_range(combine(list(reports)))
    # An invisible trace on a second x axis, so that the time axis is drawn on top too.
    figure.add_trace(
        go.Scatter(
            x=span,
            y=[rows[0], rows[0]] if rows else [],
            xaxis="x2",
            mode="markers",
            marker={"opacity": 0},
            hoverinfo="skip",
            showlegend=False,
        )
    )
    row_height = max(_MIN_ROW, min(_MAX_ROW, _TIMELINE_ROWS_HEIGHT / max(1, len(rows))))
    plot_height = row_height * len(rows)
    figure.update_layout(
        barmode="overlay",
        bargap=0.1 if row_height < 10 else 0.25,
        height=int(plot_height + _TIMELINE_TOP + _TIMELINE_BOTTOM),
        margin={"l": 20, "r": 20, "t": _TIMELINE_TOP, "b": _TIMELINE_BOTTOM},
        xaxis={"title": {"text": "seconds since the connection started"}, "range": span},
        xaxis2={
            "overlaying": "x",
            "side": "top",
            "matches": "x",
            "showgrid": False,
        },
        yaxis={
            # An explicit range: autorange would pad it for the invisible trace's
            # markers, a blank band above the first row.
            "range": [len(rows) - 0.5, -0.5],
            "type": "category",
            "categoryorder": "array",
            "categoryarray": rows,
            # Thin rows: label as many as fit (about one per 14 px), hover for the rest.
            "nticks": max(2, int(plot_height / 14)) if row_height < 14 else 0,
            "tickfont": {"size": 11 if row_height >= 12 else 9},
        },
        legend={"orientation": "h", "yref": "container", "y": 1, "yanchor": "top", "x": 0},
    )
    return figure


def failures_figure(go: Any, everything: ConnectionReport) -> Any | None:
    """Failures over time, stacked by error class (None: no failure recorded)."""
    if not everything.failure_times:
        return None
    width, _ = failures_over_time(everything)
    figure = go.Figure()
    classes = sorted({cls for _, _, cls in everything.failure_times})
    for cls in classes:
        figure.add_trace(
            go.Histogram(
                name=cls,
                x=[t for _, t, c in everything.failure_times if c == cls],
                xbins={"start": 0, "size": width},
            )
        )
    figure.update_layout(
        barmode="stack",
        height=320,
        margin={"l": 60, "r": 20, "t": 40, "b": 45},
        xaxis={
            "title": {"text": f"seconds since each connection started ({width:g} s a bar)"},
            "range": _axis_range(everything),
        },
        yaxis={"title": {"text": "failures"}},
        legend={
            "orientation": "h",
            "yref": "container",
            "y": 1,
            "yanchor": "top",
            "x": 0,
            "traceorder": "normal",  # classes in name order
        },
    )
    return figure


def rtt_figure(go: Any, everything: ConnectionReport) -> Any | None:
    """The heartbeat round trips' distribution with p50, p95 and p99 marked, each
    label on a line of its own (close percentiles never overlap).  A long tail
    (beyond 3 x p99) is left out of the axis, and the chart's title says how many
    round trips that leaves out and the slowest."""
    if not everything.rtts:
        return None
    figures = everything.rtt
    values = [rtt * 1000 for rtt in everything.rtts]
    slowest = max(values)
    p99 = (figures.p99 or 0.0) * 1000
    limit = slowest if slowest <= 3 * p99 or p99 <= 0 else 2 * p99
    shown = [v for v in values if v <= limit]
    figure = go.Figure(
        go.Histogram(
            x=shown,
            xbins={"start": 0, "end": limit, "size": limit / 60 or 1},
            name="round trips",
            marker={"color": "#1f77b4"},
            hovertemplate="%{y} round trips of %{x} ms<extra></extra>",
        )
    )
    marks = [
        (label, value * 1000)
        for label, value in (("p50", figures.p50), ("p95", figures.p95), ("p99", figures.p99))
        if value is not None
    ]
    for row, (label, value) in enumerate(marks):
        # Right of its line, or left of it in the right third (never cut by the edge).
        right = value > limit * 2 / 3
        figure.add_vline(x=value, line_dash="dash", line_color="#555", line_width=1)
        figure.add_annotation(
            x=value,
            y=1 - 0.13 * row,
            xref="x",
            yref="paper",
            text=f"{label} {value:.2f} ms",
            showarrow=False,
            xanchor="right" if right else "left",
            yanchor="top",
            xshift=-4 if right else 4,
            font={"size": 12},
            bgcolor="rgba(255,255,255,0.85)",
        )
    left_out = len(values) - len(shown)
    title = (
        f"{left_out} slower round trip{'s' if left_out != 1 else ''} left out of the axis "
        f"(the slowest {slowest:.2f} ms)"
        if left_out
        else ""
    )
    figure.update_layout(
        height=320,
        margin={"l": 60, "r": 20, "t": 40, "b": 45},  # the top: the title, the modebar
        title={"text": title, "font": {"size": 12}, "x": 0, "xanchor": "left"},
        xaxis={"title": {"text": "heartbeat round trip (ms)"}, "range": [0, limit * 1.04]},
        yaxis={"title": {"text": "heartbeats"}},
        bargap=0.05,
    )
    return figure


def diagram_figure(go: Any, spec: Spec, report: ConnectionReport) -> Any:
    """The spec's diagram with hot edges, laid out by
    :func:`~fsm_live.diagnostics.diagram_layout.layout_diagram` on axes in pixels."""
    colours = _colours(spec)
    counts = edge_counts(spec, report)
    layout = layout_diagram(spec, counts, _DIAGRAM_WIDTH)
    top = max((n for _, n in counts), default=0)
    sample = importlib.import_module("plotly.colors").sample_colorscale
    figure = go.Figure()
    hover_x, hover_y, hover_text = [], [], []
    for edge in layout.edges:
        source, trigger, dest = edge.edge
        heat = edge.count / top if top else 0.0
        colour = sample("YlOrRd", [0.35 + 0.65 * heat])[0] if edge.count else _QUIET
        width = 1.5 + 6.5 * heat if edge.count else 1
        figure.add_shape(
            type="path",
            xref="x",
            yref="y",
            layer="below",
            path=edge.svg_path(),
            line={"color": colour, "width": width, "dash": "solid" if edge.count else "dot"},
        )
        figure.add_annotation(
            x=edge.tip[0],
            y=edge.tip[1],
            ax=edge.tail[0],
            ay=edge.tail[1],
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            text="",
            showarrow=True,
            arrowhead=2,
            arrowsize=1,
            arrowwidth=max(1.5, width / 2),
            arrowcolor=colour,
        )
        where = (edge.label.x, edge.label.y) if edge.label is not None else edge.point(0.5)
        if edge.label is not None:
            figure.add_annotation(
                x=where[0],
                y=where[1],
                text=html.escape(edge.text),
                showarrow=False,
                font={"size": LABEL_FONT, "color": "#222" if edge.count else "#999"},
                bgcolor="rgba(255,255,255,0.85)",
            )
        hover_x.append(where[0])
        hover_y.append(where[1])
        hover_text.append(html.escape(f"{source} -{trigger}-> {dest}: {edge.count} times"))
    figure.add_trace(
        go.Scatter(
            x=hover_x,
            y=hover_y,
            mode="markers",
            hoverinfo="text",
            hovertext=hover_text,
            marker={"size": 16, "opacity": 0},
            showlegend=False,
        )
    )
    for name, box in layout.nodes.items():
        figure.add_annotation(
            x=box.x,
            y=box.y,
            text=f"<b>{html.escape(name)}</b>",
            showarrow=False,
            font={"size": NODE_FONT, "color": "#222"},
            bgcolor="white",
            bordercolor=colours[name],
            borderwidth=3,
            borderpad=8,
            hovertext=html.escape(spec.states[name].description or name),
        )
    figure.update_layout(
        width=layout.width,
        height=layout.height,
        autosize=False,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        plot_bgcolor="white",
        xaxis={"visible": False, "range": [0, layout.width]},
        yaxis={"visible": False, "range": [layout.height, 0]},
    )
    return figure


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_rows(spec: Spec, report: ConnectionReport) -> list[list[str]]:
    data = as_json(report, spec)
    back = report.time_back
    rows = [
        ["availability", share(report.availability)],
        ["observed", duration(report.observed)],
        ["reconnects", f"{report.reconnects} ({_rate(report.reconnects_per_hour)})"],
        [
            "time back p50 / p95",
            f"{duration(back.p50)} / {duration(back.p95)} "
            f"({back.count} back, {report.unrecovered} not back)",
        ],
    ]
    failures = report.failures
    rows.append(
        [
            "failures",
            "not recorded"
            if failures is None
            else ", ".join(f"{k} {v}" for k, v in failures.items()) or "none",
        ]
    )
    totals = report.totals
    if totals is not None:
        rtt = report.rtt
        rows += [
            [
                "heartbeats acked / sent",
                f"{totals.heartbeats_acked} / {totals.heartbeats_sent} "
                f"({share(totals.heartbeat_success)})",
            ],
            [
                "RTT p50 / p95 / p99",
                f"{duration(rtt.p50)} / {duration(rtt.p95)} / {duration(rtt.p99)}",
            ],
            [
                "messages in / out / duplicates dropped",
                f"{totals.messages_in} / {totals.messages_out} / {totals.duplicates_dropped}",
            ],
            [
                "token refreshes (failed)",
                f"{totals.token_refreshes} ({totals.token_refresh_failures})",
            ],
            [
                "most tasks / buffered frames in a connection",
                f"{totals.tasks_max} / {totals.buffered_max}",
            ],
        ]
    for state, figures in data["states"].items():
        rows.append(
            [
                f"time in {state}",
                f"{duration(figures['total'])} ({share(figures['share'])}), "
                f"p50 visit {duration(figures['p50'])}, p95 {duration(figures['p95'])}",
            ]
        )
    return rows


def _rate(value: float | None) -> str:
    return "- per hour" if value is None else f"{value:.1f} per hour"


def _connection_rows(reports: Sequence[ConnectionReport]) -> list[list[str]]:
    rows = []
    for report in worst_first(reports):
        totals = report.totals
        failures = report.failures
        rows.append(
            [
                report.name,
                str(report.runs),
                report.ended_in or "-",
                duration(report.observed),
                share(report.availability),
                str(report.reconnects),
                "-"
                if failures is None
                else ", ".join(f"{k} {v}" for k, v in failures.items()) or "none",
                "-" if totals is None else f"{totals.heartbeats_acked}/{totals.heartbeats_sent}",
                duration(report.rtt.p95),
                "-" if totals is None else f"{totals.messages_in}/{totals.messages_out}",
            ]
        )
    return rows


_STYLE: Final = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em;
       color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f4f4f4; }
p.note { color: #666; font-size: 0.9em; }
details summary { cursor: pointer; color: #444; margin: 0.8em 0; }
"""

_CONNECTION_HEADERS: Final = (
    "connection",
    "runs",
    "ended in",
    "observed",
    "available",
    "reconnects",
    "failures",
    "heartbeats acked",
    "RTT p95",
    "messages in/out",
)


def render_html(
    spec: Spec, reports: Sequence[ConnectionReport], everything: ConnectionReport
) -> str:
    """The report as one self-contained HTML page (UTF-8 text).  Raises
    :class:`MissingExtra` without Plotly.

    From the top: the figures of all connections; for several, the connections in
    each state over time; the timeline of states per connection; failures over
    time; heartbeat round trips; the spec's diagram with hot edges; for several,
    the table of connections (the :data:`_TABLE_ROWS` least available shown, the
    others folded in a ``<details>``).  Charts over time share their time axis.
    """
    go = require_plotly()
    offline = importlib.import_module("plotly.offline")
    pio = importlib.import_module("plotly.io")
    sections: list[str] = []

    def chart(figure: Any, div_id: str) -> str:
        return str(
            pio.to_html(
                figure, full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG
            )
        )

    def note(text: str) -> str:
        return f"<p class='note'>{html.escape(text)}</p>"

    title = (
        f"{everything.connections} connection{'s' if everything.connections != 1 else ''}"
        f", {everything.runs} run{'s' if everything.runs != 1 else ''}, "
        f"{duration(everything.observed)} observed, spec {spec.name!r}"
    )
    sections.append(f"<h1>fsm-live report</h1><p>{html.escape(title)}</p>")
    sections.append(
        "<h2>All connections</h2>" + _table(("figure", "value"), _summary_rows(spec, everything))
    )
    several = len(reports) > 1
    if several:
        sections.append(
            "<h2>Connections in each state over time</h2>"
            + note("How many connections were in each state, moment by moment.")
            + chart(states_figure(go, spec, everything), "states")
        )
    sections.append(
        "<h2>Timeline of states</h2>"
        + (note("One row per connection, least available first; hover a bar for its times.")
           if several else "")
        + chart(timeline_figure(go, spec, reports), "timeline")
    )  # fmt: skip
    failures = failures_figure(go, everything)
    sections.append(
        "<h2>Failures over time</h2>"
        + (
            chart(failures, "failures")
            if failures is not None
            else note(
                "No failure recorded"
                + (
                    "."
                    if everything.totals is not None
                    else " (the traces have no stats or failure records)."
                )
            )
        )
    )
    rtts = rtt_figure(go, everything)
    sections.append(
        "<h2>Heartbeat round trips</h2>"
        + (chart(rtts, "rtts") if rtts is not None else note("No round trip recorded."))
    )
    sections.append(
        f"<h2>The lifecycle ({html.escape(spec.name)}), hot edges</h2>"
        + note(
            "Each edge is as wide and as red as it was often taken; dotted edges were never "
            "taken (hover an edge for its name and count)."
        )
        + chart(diagram_figure(go, spec, everything), "diagram")
    )
    if several:
        rows = _connection_rows(reports)
        shown, folded = rows[:_TABLE_ROWS], rows[_TABLE_ROWS:]
        sections.append(
            "<h2>Connections (least available first)</h2>"
            + _table(_CONNECTION_HEADERS, shown)
            + (
                f"<details><summary>the other {len(folded)} connections</summary>"
                + _table(_CONNECTION_HEADERS, folded)
                + "</details>"
                if folded
                else ""
            )
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>fsm-live report</title>"
        f"<style>{_STYLE}</style>"
        f"<script type='text/javascript'>{offline.get_plotlyjs()}</script>"
        "</head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
