"""The HTML report at fleet size (fsm_live/diagnostics/html.py): how the page is built.

300 members' traces through an outage (tests/fleet_traces.py, the shape of a real
run) are read back and the page and its figures are checked for their structure:
the sections, the timeline's size and axes, the round trips' marks, units a person
reads.  Pixels are looked at by a person (headless Chromium screenshots, see the
issue's notes); the diagram's geometry has its own tests
(tests/test_diagram_layout.py).
"""

from __future__ import annotations

import json
import re

import pytest
from fleet_traces import write_fleet_traces

from fsm_live.diagnostics.files import load_reports, trace_paths
from fsm_live.diagnostics.report import ConnectionReport, combine, states_over_time
from fsm_live.diagnostics.units import duration
from fsm_live.spec import Spec

pytestmark = pytest.mark.timeout(120)

go = pytest.importorskip("plotly.graph_objects")

from fsm_live.diagnostics.html import (  # noqa: E402  (after the skip without Plotly)
    render_html,
    rtt_figure,
    timeline_figure,
)

SPEC = Spec.default()
MEMBERS = 300


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[ConnectionReport]:
    directory = tmp_path_factory.mktemp("fleet")
    write_fleet_traces(directory, SPEC, MEMBERS)
    return load_reports(SPEC, trace_paths([str(directory)]))


@pytest.fixture(scope="module")
def page(fleet: list[ConnectionReport]) -> str:
    return render_html(SPEC, fleet, combine(fleet))


def _layouts(page: str) -> dict[str, dict[str, object]]:
    """Each chart's Plotly layout in the page, by the id of its div."""
    found = {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"(\w+)",\s*', page):
        decoder = json.JSONDecoder()
        _, end = decoder.raw_decode(page, match.end())  # the data
        rest = page[end:].lstrip().removeprefix(",").lstrip()
        layout, _ = decoder.raw_decode(rest)
        found[match.group(1)] = layout
    return found


def test_the_page_has_every_section_in_order(page: str) -> None:
    headings = re.findall(r"<h2>([^<]+)</h2>", page)
    assert headings == [
        "All connections",
        "Connections in each state over time",
        "Timeline of states",
        "Failures over time",
        "Heartbeat round trips",
        f"The lifecycle ({SPEC.name}), hot edges",
        "Connections (least available first)",
    ]
    assert list(_layouts(page)) == ["states", "timeline", "failures", "rtts", "diagram"]


def test_durations_are_in_the_units_a_person_reads(
    page: str, fleet: list[ConnectionReport]
) -> None:
    observed = combine(fleet).observed
    assert observed > 7200  # 300 members x 150 s: hours
    assert f"{MEMBERS} connections, {MEMBERS} runs, {duration(observed)} observed" in page
    assert duration(observed).endswith(" h")
    assert f"{observed:.1f} s" not in page
    assert not re.search(r"\d{4,}\.\d+ s\b", page)  # no "60139.0 s" anywhere


def test_the_timeline_scales_and_has_its_time_axis_on_top_too(
    page: str, fleet: list[ConnectionReport]
) -> None:
    layout = _layouts(page)["timeline"]
    margin = layout["margin"]
    assert isinstance(margin, dict)
    rows_height = layout["height"] - margin["t"] - margin["b"]  # type: ignore[operator]
    assert 1000 <= rows_height <= 1400  # about 4.7 px a row, not 24
    assert margin["t"] <= 80  # no blank band above the rows
    assert layout["xaxis2"] == {
        "overlaying": "x",
        "side": "top",
        "matches": "x",
        "showgrid": False,
    }
    yaxis = layout["yaxis"]
    assert isinstance(yaxis, dict)
    assert yaxis["range"] == [MEMBERS - 0.5, -0.5]  # no padding above the first row
    assert len(yaxis["categoryarray"]) == MEMBERS
    legend = layout["legend"]
    assert isinstance(legend, dict)
    assert legend["yref"] == "container"  # above the chart, whatever its height
    # Least available first: the first row is the member that was up the least.
    worst = min(fleet, key=lambda r: (r.availability or 0.0, r.name))
    assert yaxis["categoryarray"][0] == worst.name


def test_a_few_connections_keep_rows_a_person_can_read(fleet: list[ConnectionReport]) -> None:
    layout = timeline_figure(go, SPEC, fleet[:3]).layout
    assert layout.height - layout.margin.t - layout.margin.b == 3 * 22


def test_the_charts_over_time_share_their_axis(page: str) -> None:
    layouts = _layouts(page)
    ranges = {name: layouts[name]["xaxis"]["range"] for name in ("states", "timeline", "failures")}  # type: ignore[index]
    assert len({tuple(r) for r in ranges.values()}) == 1, ranges
    assert ranges["timeline"][0] == 0


def test_the_round_trips_marks_never_share_a_line(fleet: list[ConnectionReport]) -> None:
    figure = rtt_figure(go, combine(fleet))
    marks = [a for a in figure.layout.annotations if a.text.startswith(("p50", "p95", "p99"))]
    assert [a.text.split()[0] for a in marks] == ["p50", "p95", "p99"]
    assert len({a.y for a in marks}) == 3  # one line each, however close their x


def test_the_states_over_time_count_every_member(fleet: list[ConnectionReport]) -> None:
    everything = combine(fleet)
    times, counts = states_over_time(everything)
    (success,) = SPEC.success_states
    (failed,) = SPEC.failed_states
    middle = len(times) // 2  # 75 s: during the outage everyone waits or has failed
    assert sum(row[middle] for row in counts.values()) == MEMBERS
    assert counts[success][middle] == 0
    assert counts[failed][middle] > MEMBERS / 2
    early = next(i for i, t in enumerate(times) if t > 10)
    assert counts[success][early] == MEMBERS


def test_a_long_connection_table_is_folded(page: str) -> None:
    assert f"<summary>the other {MEMBERS - 25} connections</summary>" in page
    table = page.split("<h2>Connections (least available first)</h2>", 1)[1]
    assert table.count("<tr>") == MEMBERS + 2  # two header rows, one row per member


def test_the_synthetic_fleet_reads_like_the_real_run(fleet: list[ConnectionReport]) -> None:
    # The shape of the run it imitates (300 lwp accounts, server down 40 s to 70 s):
    everything = combine(fleet)
    assert everything.connections == MEMBERS
    assert everything.unrecovered == 0
    assert 0.5 < (everything.availability or 0) < 0.8
    failures = everything.failures
    assert failures is not None
    assert failures["network"] >= 5 * MEMBERS
    assert everything.rtt.count > MEMBERS
