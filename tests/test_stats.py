"""Counters and the Stats snapshot built from them (fsm_live._runtime.stats)."""

from __future__ import annotations

import attrs

from fsm_live._runtime.stats import Counters, Stats

LIVE = {
    "state": "S",
    "time_in_state": 1.5,
    "reconnects": 2,
    "consecutive_failures": 1,
    "buffered": 3,
    "tasks_alive": 4,
}


def test_stats_are_the_counters_and_the_live_figures() -> None:
    counters = {field.name for field in attrs.fields(Counters)}
    stats = {field.name for field in attrs.fields(Stats)}
    assert counters <= stats
    assert stats - counters == set(LIVE)


def test_a_snapshot_copies_every_counter() -> None:
    counters = Counters(connects=5, last_error="lost: x", heartbeat_rtt=0.25, messages_in=7)
    counters.transitions[("A", "go", "B")] += 1
    counters.failures["network"] += 2
    stats = counters.snapshot(**LIVE)
    assert stats.connects == 5
    assert stats.last_error == "lost: x"
    assert stats.heartbeat_rtt == 0.25
    assert stats.messages_in == 7
    assert stats.transitions == {("A", "go", "B"): 1}
    assert stats.failures == {"network": 2}
    assert (stats.state, stats.buffered, stats.tasks_alive) == ("S", 3, 4)


def test_a_snapshot_does_not_change_with_later_counting() -> None:
    counters = Counters()
    stats = counters.snapshot(**LIVE)
    counters.transitions[("A", "go", "B")] += 1
    counters.failures["network"] += 1
    counters.messages_in += 1
    assert stats.transitions == {}
    assert stats.failures == {}
    assert stats.messages_in == 0
