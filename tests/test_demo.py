"""The demo's story: in virtual time against the in-memory environment (many seeds, long
stories, in moments), and once end to end through ``fsm-live demo`` on real sockets (slow).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import pytest
from rich.console import Console
from trio.testing import MockClock

import fsm_live.cli.demo
from fsm_live._runtime.stats import Stats
from fsm_live._runtime.trace import read_trace
from fsm_live.cli import main
from fsm_live.cli.views.demo import demo_panel
from fsm_live.cli.views.styles import StateStyles
from fsm_live.connection import LiveConnection, default_machine
from fsm_live.core.effects import TransitionRecord
from fsm_live.credentials import Secret
from fsm_live.demo import DemoEvent, DemoReport, StoryStuck, run_demo, summarize
from fsm_live.demo.environments import TOKEN_TIMEOUT, MemoryEnvironment
from fsm_live.lwp.token import TokenFetchFailed
from fsm_live.spec import Spec

SPEC = default_machine().spec
#: The story visits every state of the spec.
ALL_STATES = set(SPEC.states)
SPEC_EDGES = {(source, t.trigger, t.dest) for source, t in SPEC.edges()}


def untaken(edges: Iterable[tuple[str, str, str]]) -> list[str]:
    """The spec's transitions the story did not take, from the spec alone: every edge
    (each source of a row, e.g. ``wait`` from each state it may leave), but those into
    a final state, of which one connection takes one: each such row from some source."""
    taken = set(edges)
    missing = [
        f"{src} -[{trigger}]-> {dest}"
        for src, trigger, dest in sorted(SPEC_EDGES - taken)
        if dest not in SPEC.final_states
    ]
    missing += [
        f"any of {list(row.sources)} -[{row.trigger}]-> {row.dest}"
        for row in SPEC.transitions
        if row.dest in SPEC.final_states
        and not any((src, row.trigger, row.dest) in taken for src in row.sources)
    ]
    return missing


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class Recorder:
    """A DemoObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.records: list[TransitionRecord] = []
        self.events: list[DemoEvent] = []
        self.taken: list[int] = []

    def attach(self, conn: LiveConnection, duration: float) -> None:
        self.conn = conn

    def transition(self, record: TransitionRecord) -> None:
        self.records.append(record)

    def event(self, event: DemoEvent) -> None:
        self.events.append(event)

    def messages_taken(self, count: int) -> None:
        self.taken.append(count)


def step_at(report: DemoReport, starts: str) -> float:
    """When the story's step whose text starts with ``starts`` began."""
    [at] = [e.at for e in report.events if e.kind == "step" and e.text.startswith(starts)]
    return at


# -- the story in virtual time -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("duration", [25, 30, 75, 600])
@pytest.mark.parametrize("seed", [1, 2, 3, 7])
async def test_the_story_in_virtual_time(seed: int, duration: float, tmp_path: Path) -> None:
    recorder = Recorder()
    with anyio.fail_after(duration + 60):  # virtual seconds
        report = await run_demo(
            recorder,
            duration=duration,
            seed=seed,
            trace=tmp_path / "demo.jsonl",
            environment=MemoryEnvironment(),
        )
    trace = read_trace(report.trace)
    summary = report.summary
    edges = [(r["from"], r["trigger"], r["to"]) for r in trace]

    # It ran to its end: the application closed a CONNECTED connection, on time.
    assert report.events[-1].text == "the application closes the connection"
    assert trace[-1]["from"] == "CONNECTED"
    assert trace[-1]["to"] == "CLOSED"
    assert duration <= trace[-1]["t"] < duration + 5

    # Every state, every transition of the spec (each source of each row), and nothing
    # the spec does not have.
    assert set(summary.states_visited) == ALL_STATES
    assert untaken(edges) == []
    assert set(edges) <= SPEC_EDGES

    # The summary is the trace, and the connection's counters agree with both.
    assert summary.agrees
    assert Counter(edges) == Counter(summary.edges)
    assert len(summary.records) == len(trace) == len(recorder.records)

    # The application took every message delivered, and the count was shown as it grew.
    assert report.messages_taken == summary.stats.messages_in > 0
    assert recorder.taken == list(range(1, report.messages_taken + 1))
    assert summary.stats.duplicates_dropped > 0
    assert report.server.acks_received > 0

    # The clean session lost nothing (the application keeps up: reading never stops).
    clean = [r["trigger"] for r in trace if r["t"] < step_at(report, "half-open link")]
    assert "lost" not in clean
    assert set(clean) == {"start", "opened", "rotate"}

    # The outage: the endpoint is down, the connection waits for it and probes it, never
    # FAILED for it; back up, CONNECTED again with no help from the application.
    down, back = step_at(report, "the network goes down"), step_at(report, "the network is back")
    during = [r for r in trace if down <= r["t"] <= back]
    assert [r["trigger"] for r in during].count("wait") >= 1
    assert [r["trigger"] for r in during].count("probe") >= 1
    assert "FAILED" not in {r["to"] for r in during}
    after = [r for r in trace if r["t"] >= back]
    assert "reset" not in {r["trigger"] for r in after}
    assert [r for r in after if r["to"] == "CONNECTED"]

    # The terminal close and the refused credentials each needed the escalation (reset);
    # the sessions turned away gave up, and it retried by itself (recover): the
    # escalation had run since the last stable session.
    assert summary.edges[("CONNECTED", "fatal", "FAILED")] == 1
    assert summary.edges[("CONNECTING", "fatal", "FAILED")] == 1
    assert summary.edges[("FAILED", "reset", "RECONNECTING")] == 2
    assert summary.edges[("RECONNECTING", "give_up", "FAILED")] == 1
    assert summary.edges[("FAILED", "recover", "RECONNECTING")] == 1
    assert summary.failures["retry"] == 3  # the close 4001s, the account's own
    # A failure while the endpoint was down is the endpoint's: never FAILED for it.
    waits = [r for r in trace if r["trigger"] == "wait"]
    assert {r["from"] for r in waits} == {"CONNECTING", "CONNECTED", "RECONNECTING"}


@pytest.mark.anyio
async def test_the_memory_token_endpoint_fails_as_an_unreachable_one_would() -> None:
    cookies = {"unb": Secret("42")}
    with anyio.fail_after(60):
        async with MemoryEnvironment() as env:
            assert await env.fetch_token(cookies)
            await env.set_down(True)
            started = anyio.current_time()
            with pytest.raises(TokenFetchFailed, match=r"cannot connect \(refused\)$"):
                await env.fetch_token(cookies)
            assert anyio.current_time() == started  # at once
            await env.set_down(False)
            await env.set_black_hole(True)
            with pytest.raises(TokenFetchFailed, match="no answer within 2 s"):
                await env.fetch_token(cookies)
            assert anyio.current_time() - started == TOKEN_TIMEOUT
            await env.set_black_hole(False)
            assert await env.fetch_token(cookies)
    assert env.server_stats().tokens_issued == 2


class StuckEnvironment(MemoryEnvironment):
    """The black hole never lifts, and stopping the server fails too."""

    async def set_black_hole(self, on: bool) -> None:
        if on:
            await super().set_black_hole(on)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        raise ExceptionGroup("the server's tasks", [RuntimeError("a handler broke")])


@pytest.mark.anyio
async def test_a_stuck_story_raises_story_stuck_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(120), pytest.raises(StoryStuck) as caught:
        await run_demo(
            Recorder(),
            duration=25,
            seed=1,
            trace=tmp_path / "demo.jsonl",
            environment=StuckEnvironment(),
        )
    assert type(caught.value) is StoryStuck  # not an exception group around it
    assert str(caught.value) == "the demo got stuck waiting for: CONNECTED (15 s)"
    assert "stopping the demo's environment after it got stuck failed too" in caplog.text


def test_the_cli_says_a_stuck_story_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stuck(*args: object, **kwargs: object) -> DemoReport:
        raise StoryStuck("the demo got stuck waiting for: a heartbeat ack (10 s)")

    monkeypatch.setattr(fsm_live.cli.demo, "run_demo", stuck)
    assert main(["demo", "--duration", "25"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        "fsm-live demo: the demo got stuck waiting for: a heartbeat ack (10 s)\n",
    )


# -- pieces --------------------------------------------------------------------------------


def _stats(**changes: object) -> Stats:
    values: dict[str, object] = {
        "state": "CLOSED",
        "time_in_state": 0.0,
        "connects": 1,
        "reconnects": 0,
        "failures": {"lost": 1},
        "consecutive_failures": 0,
        "last_error": "",
        "heartbeats_sent": 0,
        "heartbeats_acked": 0,
        "heartbeat_rtt": None,
        "messages_in": 0,
        "messages_out": 0,
        "duplicates_dropped": 0,
        "token_refreshes": 0,
        "token_refresh_failures": 0,
        "cookie_refreshes": 0,
        "buffered": 0,
        "tasks_alive": 0,
        "transitions": {
            ("DISCONNECTED", "start", "CONNECTING"): 1,
            ("CONNECTING", "connect_failed", "RECONNECTING"): 1,
        },
    }
    values.update(changes)
    return Stats(**values)  # type: ignore[arg-type]


RECORDS = [
    {"t": 0.0, "from": "DISCONNECTED", "to": "CONNECTING", "trigger": "start", "reason": "started"},
    {
        "t": 0.1,
        "from": "CONNECTING",
        "to": "RECONNECTING",
        "trigger": "connect_failed",
        "reason": "lost: closed 1006 (abnormal closure)",
    },
]


def test_summarize_counts_the_trace_and_checks_it_against_the_counters() -> None:
    summary = summarize(RECORDS, _stats())
    assert summary.agrees
    assert summary.edges == {
        ("DISCONNECTED", "start", "CONNECTING"): 1,
        ("CONNECTING", "connect_failed", "RECONNECTING"): 1,
    }
    assert summary.failures == {"lost": 1}
    assert summary.states_visited == ("DISCONNECTED", "CONNECTING", "RECONNECTING")
    assert not summarize(RECORDS, _stats(failures={"network": 1})).agrees
    assert not summarize(RECORDS[:1], _stats()).agrees


def test_the_live_panel_shows_the_messages_the_application_took() -> None:
    console = Console(file=io.StringIO(), width=80)
    console.print(
        demo_panel(
            _stats(state="CONNECTED"),
            [],
            0.0,
            8.4,
            30,
            messages_taken=42,
            styles=StateStyles(Spec.default()),
        )
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert re.search(r"│ application +42 messages taken +│", text)


def test_a_too_short_demo_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["demo", "--duration", "5"])
    assert caught.value.code == 2
    assert "expected a number of seconds >= 25, got '5'" in capsys.readouterr().err


# -- end to end: the CLI, real sockets, real time ------------------------------------------


def _figure(out: str, name: str) -> str:
    match = re.search(rf"^  {name} +(.*)$", out, re.M)
    assert match is not None, f"no {name!r} figure in the summary"
    return match.group(1)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_fsm_live_demo_25s_seed_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace_path = tmp_path / "demo.jsonl"
    trace_path.write_text('{"stale": "line"}\n', encoding="utf-8")  # overwritten, not appended
    code = main(["demo", "--duration", "25", "--seed", "1", "--trace", str(trace_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    trace = read_trace(trace_path)
    states = {state for line in trace for state in (line["from"], line["to"])}
    assert states == ALL_STATES
    assert untaken((r["from"], r["trigger"], r["to"]) for r in trace) == []
    assert {(r["from"], r["trigger"], r["to"]) for r in trace} <= SPEC_EDGES
    assert (trace[-1]["from"], trace[-1]["to"]) == ("CONNECTED", "CLOSED")
    assert 25.0 <= trace[-1]["t"] < 30.0

    # One plain line per transition, in trace order, and each fault as injected.
    transition_lines = re.findall(r"^ +[\d.]+s  (\w+) -> (\w+)  \[(\w+)\]", out, re.M)
    assert transition_lines == [(line["from"], line["to"], line["trigger"]) for line in trace]
    for fault in (
        "proxy: black hole, both directions",
        "server: restart 250ms",
        "server: reject 401 x1",
        "server: drop",
        "server: close 4500",
        "server: refuse-reg x2",
        "server: close 4001",
        "server: reject 503 x1000",
        "proxy: down",
        "proxy: up",
    ):
        assert f"!! {fault}" in out
    # a probe while the proxy is down, before it comes back up
    assert out.index("[probe]") < out.index("!! proxy: up")

    # The summary's edge counts and the diagram's are the trace's.
    from_trace = Counter((line["from"], line["to"], line["trigger"]) for line in trace)
    summary = out.split("transitions by edge:\n", 1)[1].split("failures by class:", 1)[0]
    printed = {
        (src, dest, trigger): int(count)
        for count, src, dest, trigger in re.findall(
            r"^ +(\d+)  (\w+) -> (\w+) \[(\w+)\]$", summary, re.M
        )
    }
    assert printed == dict(from_trace)
    diagram = out.split("stateDiagram-v2\n", 1)[1]
    drawn = {
        (src, dest, trigger): int(count)
        for src, dest, trigger, count in re.findall(
            r"^ +(\w+) --> (\w+): (\w+)(?: \[\w+\])? \u00d7(\d+)$", diagram, re.M
        )
    }
    assert {edge: n for edge, n in drawn.items() if n} == dict(from_trace)
    failures = Counter(
        line["reason"].split(":")[0]
        for line in trace
        if line["trigger"] in ("connect_failed", "lost", "fatal")
    )
    assert {"auth", "lost", "planned", "terminal", "retry"} <= set(failures)
    for name, count in failures.items():
        assert re.search(rf"^ +{count}  {name}$", out, re.M)
    assert "counts agree with the connection's counters: yes" in out
    assert re.search(r"duplicates dropped +[1-9]", out)
    assert re.search(r"token refreshes +[1-9]", out)

    # The application took every message, and the output said so as it went.
    messages_in = int(_figure(out, "messages in").split()[0])
    assert _figure(out, "messages taken") == (
        f"{messages_in} by the application's on_message handler"
    )
    assert messages_in > 0
    so_far = [
        int(n) for n in re.findall(r"-- the application has taken (\d+) messages so far", out)
    ]
    assert len(so_far) == 8  # before each step from the half-open link on
    assert so_far == sorted(so_far)
    assert 0 < so_far[-1] <= messages_in
