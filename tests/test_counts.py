"""Counts declared once (issue 16): every reader carries exactly the declared counts.

:class:`fsm_live.counters.Counts` is the one declaration.  Each count is given its
own value here (all different, so a count read under another's name shows), and
followed through every place that carries counts as data: the runtime's counters,
``stats()``, a trace's stats record written and read back, ``fsm-live report``'s
totals over runs, ``Fleet.stats()`` over members, and the Prometheus counters.
Each must expose exactly the declared names (the metrics by
:func:`~fsm_live.counters.metric_name`) with the right values.  The views (the
CLI's tables, the HTML page, ``report --json``) show a chosen few of them by
attribute, which ``mypy --strict`` checks against the declaration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio
import attrs
import pytest
from trio.testing import MockClock

from fsm_live import Config, connect
from fsm_live._runtime.stats import Counters, Stats
from fsm_live._runtime.trace import STATS_KEYS, stats_row
from fsm_live.counters import COUNT_NAMES, Counts, add_up, describe, metric_name
from fsm_live.diagnostics.records import STATS_FIGURES, StatsRecord, parse_line, parse_lines
from fsm_live.diagnostics.report import Totals, analyze
from fsm_live.fleet.stats import FleetStats, summarize
from fsm_live.metrics.collector import families
from fsm_live.metrics.snapshot import CounterFigures, Figures
from fsm_live.spec import Spec
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink

#: A value per count, no two alike.
VALUES: Mapping[str, int] = {name: 101 + 7 * index for index, name in enumerate(COUNT_NAMES)}
LIVE = {
    "state": "CONNECTED",
    "time_in_state": 1.5,
    "reconnects": 2,
    "consecutive_failures": 0,
    "buffered": 3,
    "tasks_alive": 4,
}


def _stats() -> Stats:
    counters = Counters(**VALUES)
    counters.transitions[("CONNECTING", "opened", "CONNECTED")] += 1
    counters.failures["network"] += 1
    return counters.snapshot(**LIVE)


def _int_fields(cls: type) -> set[str]:
    return {field.name for field in attrs.fields(cls) if field.type in (int, "int")}


def test_the_declaration_has_a_meaning_and_a_metric_per_count() -> None:
    assert len(COUNT_NAMES) == len(set(COUNT_NAMES)) > 0
    for name in COUNT_NAMES:
        assert describe(name)
        assert metric_name(name).startswith("fsm_live_")
        assert metric_name(name).endswith("_total")
    assert len({metric_name(name) for name in COUNT_NAMES}) == len(COUNT_NAMES)


@pytest.mark.parametrize(
    "reader", [Counters, Stats, StatsRecord, Totals, FleetStats, CounterFigures]
)
def test_each_reader_declares_the_counts_by_extending_the_declaration(reader: type) -> None:
    """A reader's counts are the declaration's fields (inherited, never declared
    again), and it has no other count beside them under a name of its own."""
    assert issubclass(reader, Counts)
    fields = attrs.fields_dict(reader)
    for field in attrs.fields(Counts):
        assert fields[field.name].metadata == field.metadata, field.name
    assert _int_fields(reader) - set(COUNT_NAMES) == _OTHER_INT_FIGURES[reader.__name__]


#: The integer figures a reader has beside the counts (not counts: gauges, totals of
#: edges, ...).  A new one here is a decision: is it a count?  Then declare it.
_OTHER_INT_FIGURES: Mapping[str, set[str]] = {
    "Counters": set(),
    "Stats": {"reconnects", "consecutive_failures", "buffered", "tasks_alive"},
    "StatsRecord": {"line", "reconnects", "buffered", "tasks_alive"},
    "Totals": {"tasks_max", "buffered_max"},
    "FleetStats": {"connections", "crashed", "transitions_total", "reconnects"},
    "CounterFigures": {"reconnects"},
}


def test_stats_show_every_count() -> None:
    stats = _stats()
    assert {name: getattr(stats, name) for name in COUNT_NAMES} == VALUES
    assert stats.counts() == VALUES


def test_a_trace_stats_record_writes_and_reads_back_every_count() -> None:
    row = stats_row(1.0, _stats(), [0.01])
    assert tuple(row) == STATS_KEYS
    assert {key: row[key] for key in row if key not in STATS_FIGURES} == VALUES
    record = parse_line(json.dumps(row), 1)
    assert isinstance(record, StatsRecord)
    assert record.counts() == VALUES


def _run(first_t: float) -> list[str]:
    """One run of a trace: start, a stats record with VALUES, close."""

    def transition(t: float, source: str, dest: str, trigger: str) -> str:
        return json.dumps({"t": t, "from": source, "to": dest, "trigger": trigger, "reason": ""})

    return [
        transition(first_t, "DISCONNECTED", "CONNECTING", "start"),
        json.dumps(stats_row(first_t + 1, _stats(), [])),
        transition(first_t + 2, "CONNECTING", "CLOSED", "close"),
    ]


def test_the_report_adds_up_every_count_over_runs() -> None:
    report = analyze("c", Spec.default(), parse_lines([*_run(0.0), *_run(0.0)]))
    assert report.runs == 2
    assert report.totals is not None
    assert report.totals.counts() == {name: 2 * value for name, value in VALUES.items()}
    assert add_up([report.totals]) == report.totals.counts()


def test_the_fleet_adds_up_every_count_over_members() -> None:
    spec = Spec.default()
    fleet = summarize(
        [("a", _stats(), None), ("b", _stats(), None), ("c", _stats(), None)],
        at=10.0,
        states=spec.states,
        counts={"CONNECTED": 3},
        crashed=0,
        transitions_total=0,
        transitions_per_minute=0.0,
        recent=(),
        worst=3,
    )
    assert fleet.counts() == {name: 3 * value for name, value in VALUES.items()}


def test_the_metrics_export_every_count_under_its_declared_name() -> None:
    figures = Figures.empty(Spec.default().states)
    figures.add_live(_stats())
    figures.add_live(_stats())
    exported: dict[str, Any] = {}
    for family in families(["connection"], [(("c",), figures)], []):
        for sample in family.samples:
            if family.type == "counter" and sample.name.endswith("_total"):
                exported.setdefault(sample.name, 0)
                exported[sample.name] += sample.value
    per_count = {metric_name(name): 2 * value for name, value in VALUES.items()}
    assert {name: exported[name] for name in per_count} == per_count
    others = set(exported) - set(per_count)
    assert others == {
        "fsm_live_transitions_total",
        "fsm_live_failures_total",
        "fsm_live_reconnect_attempts_total",
    }


# -- through a connection: what the runtime counts reaches stats() -----------------------------


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.mark.anyio
async def test_a_handler_that_raises_is_counted_in_stats() -> None:
    """``handler_errors`` (issue 16: surfaced in stats) is what the connection counted,
    read from ``stats()``."""
    url = "ws://server.test/feed"
    network = MemoryNetwork()
    handled = anyio.Event()
    calls: list[Any] = []

    async def push_three(link: ServerLink) -> None:
        for i in range(3):
            await link.send(f"m{i}")
        await anyio.sleep_forever()

    async def fail_on_odd(message: Any) -> None:
        calls.append(message)
        if len(calls) == 3:
            handled.set()
        if message == "m1":
            raise RuntimeError("a bug in the application")

    async with (
        network.serve(url, push_three),
        connect(
            url,
            config=Config(),
            transport=MemoryTransport(network),
            on_message=fail_on_odd,
        ) as conn,
    ):
        with anyio.fail_after(60):
            await handled.wait()
        await anyio.sleep(1)  # virtual time: every handler has returned
        stats = conn.stats()
    assert calls == ["m0", "m1", "m2"]
    assert stats.handler_errors == 1
    assert stats.messages_in == 3
