"""``fsm-live report --html FILE``: one self-contained page, charts drawn with Plotly.

The page needs no network to open: plotly.js (about 4.8 MB) is inlined once in
its head, and every chart is a Plotly figure rendered into it
(``include_plotlyjs=False`` per figure).  What it shows:

* the figures of all connections, and a table with one row per connection;
* a timeline of states per connection (and run), coloured by the state's role;
* failures over time, stacked by error class;
* the distribution of heartbeat round trips, with p50/p95/p99 marked;
* the spec's diagram with hot edges: each edge's width and colour grow with how
  often it was taken, and its label says ``trigger (N)``.

Plotly is the ``report`` extra (``pip install 'fsm_live[report]'``);
:func:`require_plotly` raises :class:`~fsm_live.errors.MissingExtra` saying so.
Why Plotly: docs/diagnostics.md.
"""

from __future__ import annotations

import html
import importlib
import math
from collections import deque
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Final

from fsm_live.diagnostics.report import ConnectionReport, edge_counts, failures_over_time
from fsm_live.diagnostics.summary import as_json
from fsm_live.errors import MissingExtra
from fsm_live.spec import Spec

__all__ = ("diagram_positions", "render_html", "require_plotly")

_SUCCESS: Final = "#2ca02c"
_FAILED: Final = "#d62728"
_QUIET: Final = "#c7c7c7"
_OTHER: Final = ("#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22")
_CONFIG: Final = {"displaylogo": False, "responsive": True}


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


def diagram_positions(spec: Spec) -> dict[str, tuple[float, float]]:
    """Where the diagram draws each state: columns by distance from the initial state
    (final states in a last column of their own), spread vertically in spec order."""
    final = spec.final_states
    depth = {spec.initial: 0}
    queue = deque([spec.initial])
    while queue:
        state = queue.popleft()
        for transition in spec.transitions_from(state):
            if transition.dest not in depth and transition.dest not in final:
                depth[transition.dest] = depth[state] + 1
                queue.append(transition.dest)
    last = max(depth.values(), default=0) + 1
    columns: dict[int, list[str]] = {}
    for name in spec.states:
        columns.setdefault(depth.get(name, last), []).append(name)
    positions = {}
    for column, names in columns.items():
        for index, name in enumerate(names):
            positions[name] = (float(column), (len(names) - 1) / 2 - index)
    return positions


def _bezier(
    p0: tuple[float, float], c: tuple[float, float], p1: tuple[float, float], t: float
) -> tuple[float, float]:
    u = 1 - t
    return (
        u * u * p0[0] + 2 * u * t * c[0] + t * t * p1[0],
        u * u * p0[1] + 2 * u * t * c[1] + t * t * p1[1],
    )


def _diagram(go: Any, spec: Spec, report: ConnectionReport) -> Any:
    positions = diagram_positions(spec)
    colours = _colours(spec)
    counts = edge_counts(spec, report)
    top = max((n for _, n in counts), default=0)
    figure = go.Figure()
    pairs: dict[frozenset[str], list[int]] = {}
    for index, ((source, _, dest), _) in enumerate(counts):
        pairs.setdefault(frozenset((source, dest)), []).append(index)
    sample = importlib.import_module("plotly.colors").sample_colorscale
    hover_x, hover_y, hover_text = [], [], []
    for index, ((source, trigger, dest), count) in enumerate(counts):
        p0, p1 = positions[source], positions[dest]
        group = pairs[frozenset((source, dest))]
        rank = group.index(index) - (len(group) - 1) / 2
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        length = math.hypot(dx, dy) or 1.0
        # Opposite edges bend to opposite sides; parallel ones fan out.
        bend = (
            0.18 + 0.22 * rank
            if (source, dest) == tuple(sorted((source, dest)))
            else -0.18 - 0.22 * rank
        )
        normal = (-dy / length, dx / length)
        control = (
            (p0[0] + p1[0]) / 2 + normal[0] * bend * length,
            (p0[1] + p1[1]) / 2 + normal[1] * bend * length,
        )
        if source == dest:  # a loop above the state
            control = (p0[0], p0[1] + 0.6)
        heat = count / top if top else 0.0
        colour = sample("YlOrRd", [0.35 + 0.65 * heat])[0] if count else _QUIET
        width = 1 + 7 * heat if count else 1
        figure.add_shape(
            type="path",
            xref="x",
            yref="y",
            layer="below",
            path=f"M {p0[0]},{p0[1]} Q {control[0]},{control[1]} {p1[0]},{p1[1]}",
            line={"color": colour, "width": width, "dash": "solid" if count else "dot"},
        )
        stop = max(0.5, 1 - 0.16 / length)
        tip, tail = _bezier(p0, control, p1, stop), _bezier(p0, control, p1, stop - 0.06)
        figure.add_annotation(
            x=tip[0],
            y=tip[1],
            ax=tail[0],
            ay=tail[1],
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
        middle = _bezier(p0, control, p1, 0.5)
        figure.add_annotation(
            x=middle[0],
            y=middle[1],
            text=f"{html.escape(trigger)} ({count})",
            showarrow=False,
            font={"size": 11, "color": "#333" if count else "#999"},
            bgcolor="rgba(255,255,255,0.8)",
        )
        hover_x.append(middle[0])
        hover_y.append(middle[1])
        hover_text.append(f"{source} -{trigger}-> {dest}: {count} times")
    figure.add_trace(
        go.Scatter(
            x=hover_x,
            y=hover_y,
            mode="markers",
            hoverinfo="text",
            hovertext=hover_text,
            marker={"size": 14, "opacity": 0},
            showlegend=False,
        )
    )
    names = list(spec.states)
    figure.add_trace(
        go.Scatter(
            x=[positions[n][0] for n in names],
            y=[positions[n][1] for n in names],
            mode="markers+text",
            text=[f"<b>{html.escape(n)}</b>" for n in names],
            textposition="middle center",
            hoverinfo="text",
            hovertext=[html.escape(spec.states[n].description or n) for n in names],
            marker={
                "size": 70,
                "symbol": "square",
                "color": "white",
                "line": {"width": 3, "color": [colours[n] for n in names]},
            },
            showlegend=False,
        )
    )
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    figure.update_layout(
        height=520,
        margin={"l": 20, "r": 20, "t": 30, "b": 20},
        plot_bgcolor="white",
        xaxis={"visible": False, "range": [min(xs) - 0.6, max(xs) + 0.6]},
        yaxis={"visible": False, "range": [min(ys) - 1.0, max(ys) + 1.0]},
    )
    return figure


def _timeline(go: Any, spec: Spec, reports: Sequence[ConnectionReport]) -> Any:
    colours = _colours(spec)
    rows: list[str] = []
    by_state: dict[str, dict[str, list[Any]]] = {}
    for report in reports:
        rows.extend(
            report.name if report.runs == 1 else f"{report.name} (run {run + 1})"
            for run in range(report.runs)
        )
        for visit in report.visits:
            row = report.name if report.runs == 1 else f"{report.name} (run {visit.run + 1})"
            data = by_state.setdefault(visit.state, {"y": [], "x": [], "base": [], "text": []})
            data["y"].append(row)
            data["x"].append(visit.duration)
            data["base"].append(visit.start)
            data["text"].append(
                f"{visit.state}: {visit.start:.3f} s to {visit.end:.3f} s "
                f"({visit.duration:.3f} s)" + ("" if visit.complete else ", cut short")
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
                marker={"color": colours[state]},
            )
        )
    figure.update_layout(
        barmode="overlay",
        height=max(260, 24 * len(rows) + 120),
        margin={"l": 20, "r": 20, "t": 30, "b": 40},
        xaxis={"title": {"text": "seconds since the connection started"}},
        yaxis={
            "autorange": "reversed",
            "type": "category",
            "categoryorder": "array",
            "categoryarray": rows,
        },
        legend={"orientation": "h", "y": 1.08},
    )
    return figure


def _failures(go: Any, everything: ConnectionReport) -> Any | None:
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
        margin={"l": 20, "r": 20, "t": 30, "b": 40},
        xaxis={"title": {"text": f"seconds since the connection started ({width:g} s a bar)"}},
        yaxis={"title": {"text": "failures"}},
    )
    return figure


def _rtts(go: Any, everything: ConnectionReport) -> Any | None:
    if not everything.rtts:
        return None
    figure = go.Figure(
        go.Histogram(
            x=[rtt * 1000 for rtt in everything.rtts],
            nbinsx=60,
            name="round trips",
            marker={"color": "#1f77b4"},
        )
    )
    figures = everything.rtt
    for label, value in (("p50", figures.p50), ("p95", figures.p95), ("p99", figures.p99)):
        if value is not None:
            figure.add_vline(
                x=value * 1000,
                line_dash="dash",
                line_color="#555",
                annotation_text=f"{label} {value * 1000:.2f} ms",
            )
    figure.update_layout(
        height=320,
        margin={"l": 20, "r": 20, "t": 40, "b": 40},
        xaxis={"title": {"text": "heartbeat round trip (ms)"}},
        yaxis={"title": {"text": "heartbeats"}},
    )
    return figure


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _sec(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


def _summary_rows(spec: Spec, report: ConnectionReport) -> list[list[str]]:
    data = as_json(report, spec)
    rows = [
        ["availability", _pct(report.availability)],
        ["observed", _sec(report.observed)],
        ["reconnects", f"{report.reconnects} ({_rate(report.reconnects_per_hour)})"],
        [
            "time back p50 / p95",
            f"{_sec(report.time_back.p50)} / "
            f"{_sec(report.time_back.p95)} ({report.time_back.count} "
            f"back, {report.unrecovered} not back)",
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
                f"{totals.heartbeats_acked} / "
                f"{totals.heartbeats_sent} "
                f"({_pct(totals.heartbeat_success)})",
            ],
            ["RTT p50 / p95 / p99", f"{_ms(rtt.p50)} / {_ms(rtt.p95)} / {_ms(rtt.p99)}"],
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
                f"{_sec(figures['total'])} "
                f"({_pct(figures['share'])}), p50 visit "
                f"{_sec(figures['p50'])}, p95 {_sec(figures['p95'])}",
            ]
        )
    return rows


def _rate(value: float | None) -> str:
    return "- per hour" if value is None else f"{value:.1f} per hour"


def _connection_rows(reports: Sequence[ConnectionReport]) -> list[list[str]]:
    rows = []
    for report in sorted(
        reports, key=lambda r: (r.availability if r.availability is not None else 2.0, r.name)
    ):
        totals = report.totals
        failures = report.failures
        rows.append(
            [
                report.name,
                str(report.runs),
                report.ended_in or "-",
                _sec(report.observed),
                _pct(report.availability),
                str(report.reconnects),
                "-"
                if failures is None
                else ", ".join(f"{k} {v}" for k, v in failures.items()) or "none",
                "-" if totals is None else f"{totals.heartbeats_acked}/{totals.heartbeats_sent}",
                _ms(report.rtt.p95),
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
"""


def render_html(
    spec: Spec, reports: Sequence[ConnectionReport], everything: ConnectionReport
) -> str:
    """The report as one self-contained HTML page (UTF-8 text).  Raises
    :class:`MissingExtra` without Plotly."""
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

    title = (
        f"{everything.connections} connection{'s' if everything.connections != 1 else ''}"
        f", {everything.runs} run{'s' if everything.runs != 1 else ''}, "
        f"{everything.observed:.1f} s observed, spec {spec.name!r}"
    )
    sections.append(f"<h1>fsm-live report</h1><p>{html.escape(title)}</p>")
    sections.append(
        "<h2>All connections</h2>" + _table(("figure", "value"), _summary_rows(spec, everything))
    )
    sections.append("<h2>Timeline of states</h2>" + chart(_timeline(go, spec, reports), "timeline"))
    failures = _failures(go, everything)
    sections.append(
        "<h2>Failures over time</h2>"
        + (
            chart(failures, "failures")
            if failures is not None
            else "<p class='note'>No failure recorded"
            + (
                "."
                if everything.totals is not None
                else " (the traces have no stats or failure records)."
            )
            + "</p>"
        )
    )
    rtts = _rtts(go, everything)
    sections.append(
        "<h2>Heartbeat round trips</h2>"
        + (
            chart(rtts, "rtts")
            if rtts is not None
            else "<p class='note'>No round trip recorded.</p>"
        )
    )
    sections.append(
        f"<h2>The lifecycle ({html.escape(spec.name)}), hot edges</h2>"
        "<p class='note'>Each edge is as wide and as red as it was often taken; "
        "dotted edges were never taken.</p>" + chart(_diagram(go, spec, everything), "diagram")
    )
    if len(reports) > 1:
        sections.append(
            "<h2>Connections (least available first)</h2>"
            + _table(
                (
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
                ),
                _connection_rows(reports),
            )
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>fsm-live report</title>"
        f"<style>{_STYLE}</style>"
        f"<script type='text/javascript'>{offline.get_plotlyjs()}</script>"
        "</head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
