"""``fsm-live demo``: the whole story runs, visits every state, and its summary is its trace."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from fsm_live.cli import main
from fsm_live.demo import summarize
from fsm_live._runtime.stats import Stats
from fsm_live._runtime.trace import read_trace

SIX_STATES = {"DISCONNECTED", "CONNECTING", "CONNECTED", "RECONNECTING", "FAILED", "CLOSED"}
TRIGGERS = {"start", "opened", "connect_failed", "lost", "rotate", "retry", "give_up", "fatal",
            "reset", "recover", "close"}


@pytest.mark.timeout(60)
def test_demo_20s_seed_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace_path = tmp_path / "demo.jsonl"
    trace_path.write_text('{"stale": "line"}\n', encoding="utf-8")  # overwritten, not appended
    code = main(["demo", "--duration", "20", "--seed", "1", "--trace", str(trace_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    trace = read_trace(trace_path)
    states = {state for line in trace for state in (line["from"], line["to"])}
    assert states == SIX_STATES
    assert {line["trigger"] for line in trace} == TRIGGERS  # every transition class
    assert trace[-1]["to"] == "CLOSED"
    assert 20.0 <= trace[-1]["t"] < 25.0

    # One plain line per transition, in trace order, and each fault as injected.
    transition_lines = re.findall(r"^ +[\d.]+s  (\w+) -> (\w+)  \[(\w+)\]", out, re.M)
    assert transition_lines == [(line["from"], line["to"], line["trigger"]) for line in trace]
    for fault in ("proxy: black hole, both directions", "server: restart 250ms",
                  "server: reject 401 x1", "server: drop", "server: close 4500",
                  "proxy: down"):
        assert f"!! {fault}" in out

    # The summary's edge counts and the diagram's are the trace's.
    from_trace = Counter((line["from"], line["to"], line["trigger"]) for line in trace)
    summary = out.split("transitions by edge:\n", 1)[1].split("failures by class:", 1)[0]
    printed = {(src, dest, trigger): int(count) for count, src, dest, trigger
               in re.findall(r"^ +(\d+)  (\w+) -> (\w+) \[(\w+)\]$", summary, re.M)}
    assert printed == dict(from_trace)
    diagram = out.split("stateDiagram-v2\n", 1)[1]
    drawn = {(src, dest, trigger): int(count) for src, dest, trigger, count
             in re.findall(r"^ +(\w+) --> (\w+): (\w+)(?: \[\w+\])? \u00d7(\d+)$", diagram, re.M)}
    assert {edge: n for edge, n in drawn.items() if n} == dict(from_trace)
    failures = Counter(line["reason"].split(":")[0] for line in trace
                       if line["trigger"] in ("connect_failed", "lost", "fatal"))
    assert {"auth", "lost", "planned", "terminal", "network"} <= set(failures)
    for name, count in failures.items():
        assert re.search(rf"^ +{count}  {name}$", out, re.M)
    assert "counts agree with the connection's counters: yes" in out
    assert re.search(r"duplicates dropped +[1-9]", out)
    assert re.search(r"token refreshes +[1-9]", out)


def _stats(**changes: object) -> Stats:
    values: dict[str, object] = {
        "state": "CLOSED", "time_in_state": 0.0, "connects": 1, "reconnects": 0,
        "failures": {"lost": 1}, "consecutive_failures": 0, "last_error": "",
        "heartbeats_sent": 0, "heartbeats_acked": 0, "heartbeat_rtt": None,
        "messages_in": 0, "messages_out": 0, "duplicates_dropped": 0, "token_refreshes": 0,
        "token_refresh_failures": 0, "cookie_refreshes": 0, "buffered": 0, "tasks_alive": 0,
        
        "transitions": {("DISCONNECTED", "start", "CONNECTING"): 1,
                        ("CONNECTING", "connect_failed", "RECONNECTING"): 1},
    }
    values.update(changes)
    return Stats(**values)  # type: ignore[arg-type]


RECORDS = [
    {"t": 0.0, "from": "DISCONNECTED", "to": "CONNECTING", "trigger": "start",
     "reason": "started"},
    {"t": 0.1, "from": "CONNECTING", "to": "RECONNECTING", "trigger": "connect_failed",
     "reason": "lost: closed 1006 (abnormal closure)"},
]


def test_summarize_counts_the_trace_and_checks_it_against_the_counters() -> None:
    summary = summarize(RECORDS, _stats())
    assert summary.agrees
    assert summary.edges == {("DISCONNECTED", "start", "CONNECTING"): 1,
                             ("CONNECTING", "connect_failed", "RECONNECTING"): 1}
    assert summary.failures == {"lost": 1}
    assert summary.states_visited == ("DISCONNECTED", "CONNECTING", "RECONNECTING")
    assert not summarize(RECORDS, _stats(failures={"network": 1})).agrees
    assert not summarize(RECORDS[:1], _stats()).agrees


def test_a_too_short_demo_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["demo", "--duration", "5"])
    assert caught.value.code == 2
    assert "expected a number of seconds >= 15, got '5'" in capsys.readouterr().err
