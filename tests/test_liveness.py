"""fsm_live.core.liveness: heartbeats out on a fixed schedule, evidence of life in,
the application's backpressure never the peer's fault (docs/architecture.md, rule 8)."""

from __future__ import annotations

import math

from fsm_live.core.liveness import MAX_IN_FLIGHT, Liveness


def test_heartbeats_keep_a_fixed_schedule_and_skip_missed_ones() -> None:
    liveness = Liveness(interval=15, timeout=30)
    assert liveness.next_heartbeat == math.inf  # not running
    liveness.start_heartbeats(100.0)
    assert not liveness.heartbeat_due(114.9)
    assert liveness.heartbeat_due(115.2)  # a late wake-up ...
    assert liveness.next_heartbeat == 130.0  # ... does not shift the schedule
    assert liveness.heartbeat_due(171.0)  # a wake-up two intervals late: one heartbeat
    assert liveness.next_heartbeat == 186.0  # and the next one interval on, not bunched
    liveness.stop_heartbeats()
    assert liveness.next_heartbeat == math.inf
    assert liveness.in_flight == 0


def test_acks_give_round_trips_of_heartbeats_in_flight_only() -> None:
    liveness = Liveness(interval=15, timeout=30)
    liveness.sent("a", 10.0)
    liveness.sent("b", 25.0)
    assert liveness.in_flight == 2
    assert liveness.acked("b", 25.5) == 0.5
    assert liveness.acked("b", 26.0) is None  # once
    assert liveness.acked("never sent", 26.0) is None
    for n in range(MAX_IN_FLIGHT + 5):
        liveness.sent(n, 30.0 + n)
    assert liveness.in_flight == MAX_IN_FLIGHT  # the oldest forgotten
    assert liveness.acked("a", 60.0) is None


def test_silence_counts_from_the_latest_evidence() -> None:
    liveness = Liveness(interval=15, timeout=30, now=0.0)
    liveness.begin(10.0)
    assert liveness.silence_deadline() == 40.0
    assert liveness.note(20.0)
    assert not liveness.note(15.0)  # evidence handed late never moves it back
    assert liveness.silence_deadline() == 50.0


def test_our_own_backpressure_is_never_the_peers_silence() -> None:
    liveness = Liveness(interval=15, timeout=30)
    liveness.begin(0.0)
    liveness.pause(5.0)
    assert liveness.silence_deadline() == math.inf
    assert liveness.warning_deadline() == 35.0
    assert liveness.warning_due(34.0) is None
    assert liveness.warning_due(36.0) == 31.0  # how long reading has been paused
    assert liveness.warning_deadline() == math.inf  # once per session
    assert liveness.resume(100.0) == 95.0  # warned: the resume is reported too
    assert liveness.silence_deadline() == 130.0  # counted from the resume
    liveness.pause(110.0)
    assert liveness.resume(111.0) is None  # a short pause after the warning: quiet
    liveness.begin(200.0)  # a new session
    assert (liveness.paused_at, liveness.warned) == (None, False)
