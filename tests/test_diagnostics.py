"""``fsm-live verify`` and ``fsm-live report`` on real traces: the demo's (in virtual time,
against the in-memory environment) and a live connection's (in-memory network, virtual
time), plus the rules of verify one by one on small traces.

The HTML page is checked twice: here, that it loads nothing from anywhere (no
``src``/``href`` to a network address, plotly.js inlined once, one
``Plotly.newPlot`` per chart); and, marked slow, in headless Chromium with every
host unresolvable, that the charts are drawn.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from trio.testing import MockClock

from fsm_live._runtime import trace as writer
from fsm_live.cli import main
from fsm_live.config import Config
from fsm_live.connection import connect
from fsm_live.core.backoff import FixedDelay
from fsm_live.demo import run_demo
from fsm_live.demo.environments import MemoryEnvironment
from fsm_live.diagnostics import records
from fsm_live.diagnostics.files import connection_name, load_reports
from fsm_live.diagnostics.percentiles import percentile
from fsm_live.diagnostics.records import parse_lines
from fsm_live.diagnostics.report import analyze, combine
from fsm_live.diagnostics.verify import verify_lines
from fsm_live.spec import Spec
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, echo

pytestmark = pytest.mark.timeout(30)

SPEC = Path(__file__).resolve().parent.parent / "specs" / "connection.yaml"
OK = "ws://ok.test/"
DOWN = "ws://down.test/"  # nothing serves it: every attempt is refused


class _Quiet:
    """A demo observer that watches nothing."""

    def attach(self, conn: Any, duration: float) -> None: ...
    def transition(self, record: Any) -> None: ...
    def event(self, event: Any) -> None: ...
    def messages_taken(self, count: int) -> None: ...


def _virtual(function: Any) -> None:
    anyio.run(function, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


@pytest.fixture(scope="module")
def demo_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's trace: 75 virtual seconds of every state and trigger."""
    path = tmp_path_factory.mktemp("demo") / "demo.jsonl"

    async def run() -> None:
        with anyio.fail_after(200):
            await run_demo(
                _Quiet(), duration=75, seed=1, trace=path, environment=MemoryEnvironment()
            )

    _virtual(run)
    return path


@pytest.fixture(scope="module")
def live_traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of two live connections' traces: one to an echo server (stats every
    second), one to a URL nothing serves (refused, backing off, closed)."""
    folder = tmp_path_factory.mktemp("live")
    config = Config(
        heartbeat_interval=1, heartbeat_timeout=3, backoff=FixedDelay(2), trace_stats_interval=1
    )

    async def run() -> None:
        network = MemoryNetwork()
        ok = connect(
            OK,
            transport=MemoryTransport(network),
            config=config,
            protocol="json",
            trace=folder / "ok.jsonl",
        )
        down = connect(
            DOWN,
            transport=MemoryTransport(network),
            config=config,
            trace=folder / "team%2Fdown.jsonl",
        )
        with anyio.fail_after(600):
            async with network.serve(OK, echo), ok, down:
                await ok.wait_connected()
                for i in range(5):
                    await ok.send({"id": str(i), "text": "hello"})
                await anyio.sleep(10)

    _virtual(run)
    return folder


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- the format ---------------------------------------------------------------------------


def test_the_reader_knows_the_writers_keys() -> None:
    assert records.TRANSITION_KEYS == writer.TRACE_KEYS
    assert records.STATS_KEYS == writer.STATS_KEYS
    assert records.FAILURE_KEYS == writer.FAILURE_KEYS
    assert set(writer.KINDS) == {"failure", "stats"}


def test_a_live_trace_has_every_record_kind(live_traces: Path) -> None:
    rows = [json.loads(line) for line in (live_traces / "ok.jsonl").read_text().splitlines()]
    kinds = {row.get("kind", "transition") for row in rows}
    assert kinds == {"transition", "stats"}
    assert all(tuple(row) == writer.TRACE_KEYS for row in rows if "kind" not in row)
    stats = [row for row in rows if row.get("kind") == "stats"]
    assert len(stats) >= 5  # every second or so, and one at the close
    assert all(tuple(row) == writer.STATS_KEYS for row in stats)
    assert stats[-1]["state"] == "CLOSED"
    assert sum(len(row["rtts"]) for row in stats) == stats[-1]["heartbeats_acked"] > 0
    assert stats[-1]["messages_out"] == 5
    down = [
        json.loads(line) for line in (live_traces / "team%2Fdown.jsonl").read_text().splitlines()
    ]
    failures = [row for row in down if row.get("kind") == "failure"]
    assert failures
    assert {row["class"] for row in failures} == {"network"}
    assert writer.read_trace(live_traces / "ok.jsonl") == [row for row in rows if "kind" not in row]


# -- verify ---------------------------------------------------------------------------------


def test_the_demo_trace_verifies(demo_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "verify", SPEC, demo_trace)
    assert (code, err) == (0, "")
    assert re.fullmatch(rf"{re.escape(str(demo_trace))}: ok \(\d+ transitions, 1 run\)\n", out)


def test_live_traces_verify(live_traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "verify", SPEC, live_traces)  # a directory: every *.jsonl
    assert (code, err) == (0, "")
    assert out.count(": ok (") == 2


def test_a_row_removed_from_the_middle_is_named_by_its_line(
    demo_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = demo_trace.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [json.loads(line) for line in lines]
    # A transition in the middle followed by a transition: the latter is the violation.
    middle = next(
        i
        for i in range(len(rows) // 2, len(rows) - 1)
        if "kind" not in rows[i] and "kind" not in rows[i + 1]
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:middle] + lines[middle + 1 :]), encoding="utf-8")
    code, out, err = cli(capsys, "verify", SPEC, broken)
    assert code == 1
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(
        f"{broken}:{middle + 1}: from {rows[middle + 1]['from']}, but the "
        f"previous transition (line "
    )
    assert line.endswith(f" entered {rows[middle]['from']}")


def _t(t: float, source: str, trigger: str, dest: str) -> str:
    return json.dumps({"t": t, "from": source, "to": dest, "trigger": trigger, "reason": ""})


START = _t(0, "DISCONNECTED", "start", "CONNECTING")
OPENED = _t(0.1, "CONNECTING", "opened", "CONNECTED")


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        ([OPENED], 1, "the first transition leaves CONNECTING, not the initial state DISCONNECTED"),
        (
            [START, _t(0.1, "CONNECTING", "lost", "CONNECTED")],
            2,
            "CONNECTING -lost-> CONNECTED is not an edge of spec 'connection'",
        ),
        (
            [START, OPENED, _t(0.05, "CONNECTED", "close", "CLOSED")],
            3,
            "t goes back: 0.05 after 0.1",
        ),
        (
            [
                START,
                OPENED,
                _t(1, "CONNECTED", "close", "CLOSED"),
                _t(2, "CLOSED", "start", "CONNECTING"),
            ],
            4,
            "CLOSED is final (entered on line 3)",
        ),
        ([START, "{not json"], 2, "not JSON"),
        ([START, json.dumps({"t": 0, "from": "A"})], 2, "a transition record needs the keys"),
        (
            [START, json.dumps({"t": 0, "kind": "failure", "class": "gremlins"})],
            2,
            "failure class 'gremlins' is not an error class",
        ),
        ([START, json.dumps({"t": 0, "kind": "meteor"})], 2, "unknown record kind 'meteor'"),
    ],
    ids=[
        "first-row",
        "not-an-edge",
        "time-goes-back",
        "final-left",
        "not-json",
        "keys",
        "unknown-class",
        "unknown-kind",
    ],
)
def test_each_rule_names_its_line(lines: list[str], line: int, message: str) -> None:
    verdict = verify_lines(Spec.default(), parse_lines(lines))
    assert verdict.violation is not None
    assert verdict.violation.line == line
    assert verdict.violation.message.startswith(message), verdict.violation.message


def test_runs_one_after_the_other_verify() -> None:
    run = [START, OPENED, _t(1, "CONNECTED", "close", "CLOSED")]
    verdict = verify_lines(Spec.default(), parse_lines([*run, "", *run]))
    assert verdict.ok
    assert (verdict.transitions, verdict.runs) == (6, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "nope.yaml", "t.jsonl"], "fsm-live verify: error: nope.yaml: no such file"),
        (
            ["verify", SPEC, "missing.jsonl"],
            "fsm-live verify: error: missing.jsonl: no such file or directory",
        ),
        (
            ["verify", SPEC, "empty-dir"],
            "fsm-live verify: error: empty-dir: a directory without *.jsonl trace files",
        ),
        (
            ["report", "missing.jsonl"],
            "fsm-live report: error: missing.jsonl: no such file or directory",
        ),
        (
            ["report", "--spec", "bad.yaml", "t.jsonl"],
            "fsm-live report: error: bad.yaml: not a valid spec: line 1: ",
        ),
        (["verify", ".", "t.jsonl"], "fsm-live verify: error: .: a directory, not a spec file"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "t.jsonl").write_text(START + "\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("states: 3\n", encoding="utf-8")
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(message), err


# -- report ---------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([float(i) for i in range(101)], 95) == pytest.approx(95.0)


def test_report_figures_of_the_demo(demo_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "report", demo_trace, "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    figures = data["all"]
    assert data["spec"] == "connection"
    assert figures["connections"] == figures["runs"] == 1
    assert figures["observed_seconds"] == pytest.approx(75, abs=5)
    assert 0.5 < figures["availability"] < 1
    states = figures["states"]
    spec = Spec.default()
    assert set(states) == {name for name, state in spec.states.items() if not state.final}
    assert sum(s["share"] for s in states.values()) == pytest.approx(1)
    assert states["CONNECTED"]["share"] == pytest.approx(figures["availability"])
    assert states["CONNECTED"]["p50"] <= states["CONNECTED"]["p95"]
    transitions = writer.read_trace(demo_trace)
    last_stats = json.loads(demo_trace.read_text().splitlines()[-1])
    assert figures["reconnects"] == last_stats["reconnects"] > 0
    assert figures["time_back"]["count"] > 0
    assert figures["failures"]["by_class"] == last_stats["failures"]
    assert sum(map(sum, figures["failures"]["over_time"]["counts"].values())) == sum(
        last_stats["failures"].values()
    )
    assert figures["heartbeats"]["sent"] == last_stats["heartbeats_sent"]
    assert figures["heartbeats"]["rtt_seconds"]["count"] == last_stats["heartbeats_acked"]
    assert figures["messages"] == {
        "in": last_stats["messages_in"],
        "out": last_stats["messages_out"],
        "duplicates_dropped": last_stats["duplicates_dropped"],
    }
    assert figures["tokens"]["refreshes"] == last_stats["token_refreshes"]
    edges = figures["edges"]
    assert len(edges) == sum(1 for _ in Spec.default().edges())
    assert sum(edge["count"] for edge in edges) == len(transitions)


def test_report_as_plain_text(live_traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "report", live_traces)
    assert (code, err) == (0, "")
    assert "\x1b[" not in out
    assert out.startswith("fsm-live report: 2 connections, 2 runs, ")
    for figure in (
        "availability",
        "reconnects",
        "failures",
        "heartbeats",
        "messages",
        "token refreshes",
        "time in state",
        "edges taken",
        "connections (least available first)",
        "traffic",
    ):
        assert figure in out, figure
    assert "team/down" in out  # the file name, %XX decoded
    assert "network " in out  # its failures by class


def test_report_of_a_clean_and_a_refused_connection(live_traces: Path) -> None:
    spec = Spec.default()
    ok, down = sorted(load_reports(spec, sorted(live_traces.glob("*.jsonl"))), key=lambda r: r.name)
    assert (ok.name, down.name) == ("ok", "team/down")
    assert ok.availability == pytest.approx(1, abs=0.01)
    assert ok.reconnects == 0
    assert ok.totals is not None
    assert ok.totals.messages_out == 5
    assert ok.rtt.count == ok.totals.heartbeats_acked > 0
    assert down.availability == 0
    assert down.reconnects > 0
    # Its first failures are its own; then its endpoint is down and it waits, probing
    # (a probe that fails is the outage, not a failure of the connection's).
    assert down.failures == {"network": Config().endpoint_failures - 1}
    assert "WAITING" in down.states
    assert down.unrecovered == 0  # it never was up: no outage to come back from
    everything = combine([ok, down])
    assert everything.observed == pytest.approx(ok.observed + down.observed)
    assert everything.availability == pytest.approx(ok.observed / everything.observed, abs=0.01)


def test_a_transitions_only_trace_reports_what_it_can() -> None:
    lines = parse_lines([START, OPENED, _t(10.1, "CONNECTED", "close", "CLOSED")])
    report = analyze("old", Spec.default(), lines)
    assert report.availability == pytest.approx(10 / 10.1)
    assert report.totals is None
    assert report.failures is None
    assert connection_name(Path("a%2Fb.jsonl")) == "a/b"


def _is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\shref\s*=", page, re.IGNORECASE)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", page.split("<script", 1)[0])
    assert page.count("Plotly.newPlot(") >= 4  # timeline, failures, round trips, diagram


def test_the_html_page_is_self_contained(
    demo_trace: Path, live_traces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotly")
    page = tmp_path / "report.html"
    code, _, err = cli(capsys, "report", demo_trace, live_traces, "--html", page)
    assert code == 0
    assert err.startswith(f"fsm-live report: wrote {page} (")
    text = page.read_text(encoding="utf-8")
    _is_self_contained(text)
    for name in (
        "demo",
        "ok",
        "team/down",
        "Timeline of states",
        "Failures over time",
        "Heartbeat round trips",
        "hot edges",
    ):
        assert name in text, name


def test_html_without_plotly_is_one_line(
    demo_trace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    code, out, err = cli(capsys, "report", demo_trace, "--html", tmp_path / "r.html")
    assert code == 1
    assert out == ""
    assert err == "fsm-live report: --html needs Plotly: pip install 'fsm_live[report]'\n"
    assert not (tmp_path / "r.html").exists()


CHROMIUM = next(
    (
        found
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (found := shutil.which(name))
    ),
    None,
)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium here")
def test_the_html_page_draws_its_charts_offline(
    demo_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotly")
    page = tmp_path / "report.html"
    assert cli(capsys, "report", demo_trace, "--html", page)[0] == 0
    assert CHROMIUM is not None
    # Every host unresolvable and every connection through a dead proxy: nothing
    # could load from a network even if the page asked for it.
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=socks5://127.0.0.1:9",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count('class="main-svg"') >= 4  # Plotly drew an SVG per chart
    for div in ("timeline", "failures", "rtts", "diagram"):
        assert re.search(rf'<div id="{div}" class="[^"]*js-plotly-plot', dom) or re.search(
            rf'id="{div}"[^>]*>\s*<div class="plot-container', dom
        ), div


# -- docs -----------------------------------------------------------------------------------


DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_troubleshooting_names_real_settings_and_metrics() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    # The symptoms' table only (the page has others: what an outage costs).
    symptoms = text[text.index("| symptom |") :].split("\n\n", 1)[0]
    rows = [
        line.split(" | ")
        for line in symptoms.splitlines()
        if line.startswith("| ") and not line.startswith(("| symptom", "| ---"))
    ]
    assert len(rows) >= 8
    fields = {field.name for field in attrs.fields(Config)}
    for row in rows:
        settings = set(re.findall(r"`([a-z_]+)`", row[3]))
        assert settings, row[0]
        assert settings <= fields, (row[0], settings - fields)
    metrics = set(re.findall(r"\b(fsm_live_[a-z_]+)", text))
    documented = set(
        re.findall(
            r"\| `(fsm_live_[a-z_]+)` \|", (DOCS / "diagnostics.md").read_text(encoding="utf-8")
        )
    )
    assert len(documented) == 10
    assert metrics <= documented
    for symptom in (
        "frequent disconnects",
        "heartbeat timeouts",
        "token refresh failures",
        "memory growth",
        "a slow application",
        "an outage of the server",
        "an account that keeps failing on its own",
        "a half-open link",
        "accept-then-close",
    ):
        assert f"| {symptom}" in text, symptom


def test_the_documented_stats_keys_are_the_written_ones() -> None:
    text = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    table = text.split("| key | unit | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {
        key
        for cell in re.findall(r"^\| ([^|]+) \|", table, re.MULTILINE)
        for key in re.findall(r"`([a-z_]+)`", cell)
    }
    assert documented | {"t", "kind"} == set(writer.STATS_KEYS)


def test_report_refuses_a_trace_of_another_spec(
    capsys: pytest.CaptureFixture[str], live_traces: Path
) -> None:
    other = Path(__file__).resolve().parent.parent / "specs" / "examples" / "traffic_light.yaml"
    trace = sorted(live_traces.glob("*.jsonl"))[0]
    code, _, err = cli(capsys, "report", trace, "--spec", other)
    assert code == 2
    assert re.fullmatch(
        rf"fsm-live report: error: {re.escape(str(trace))}:1: '\w+' is not a state of "
        rf".*traffic_light\.yaml \(a trace of another spec\? name it with --spec\)\n",
        err,
    ), err


def test_report_refuses_a_file_with_no_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"a": 1}\nnot json\n', encoding="utf-8")
    code, _, err = cli(capsys, "report", path)
    assert (code, err) == (
        2,
        f"fsm-live report: error: {path}: no record of a trace in it "
        "(fsm-live verify names each line)\n",
    )
