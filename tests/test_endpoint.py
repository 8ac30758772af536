"""fsm_live.core.endpoint: one answer for every connection that dials an endpoint, sans-I/O."""

from __future__ import annotations

import math
from collections.abc import Hashable

from fsm_live.core.endpoint import DOWN, FIRST_PROBE_GAP, PROBE, UP, Endpoint, EndpointChanged


class Told:
    """Records what the endpoint delivers, by member."""

    def __init__(self) -> None:
        self.heard: list[tuple[Hashable, str]] = []

    def __call__(self, member: Hashable, event: EndpointChanged) -> None:
        self.heard.append((member, event.what))


def endpoint(down_after: int = 3, probe_interval: float = 2.0) -> tuple[Endpoint, Told]:
    told = Told()
    ep = Endpoint("server.test:443", down_after=down_after, probe_interval=probe_interval)
    ep.random = lambda: 0.5  # no jitter: gaps exactly as computed
    ep.deliver = told
    for member in "abcd":
        ep.join(member)
    return ep, told


def test_down_after_failures_in_a_row_of_any_member() -> None:
    ep, told = endpoint(down_after=3)
    assert not ep.failed("a", 1.0)
    assert not ep.failed("b", 1.1)
    assert ep.failed("c", 1.2)  # the third in a row, whoever failed
    assert (ep.up, ep.down_since) == (False, 1.2)
    # Every other member hears it (those backing off then wait).
    assert sorted(told.heard) == [("a", DOWN), ("b", DOWN), ("d", DOWN)]


def test_a_connect_or_a_heartbeat_ack_in_between_breaks_the_row() -> None:
    ep, _ = endpoint(down_after=2)
    ep.failed("a", 1.0)
    assert ep.connected("b", 1.1) is None  # it was up: nothing to report
    assert not ep.failed("a", 1.2)
    ep.alive()  # a member's heartbeat was acked: the endpoint works
    assert not ep.failed("c", 1.3)
    assert ep.up


def test_one_prober_at_a_time_in_turn_with_growing_gaps() -> None:
    ep, told = endpoint(down_after=1, probe_interval=2.0)
    ep.failed("a", 10.0)
    for member in "abcd":
        ep.wait(member, 10.0)
    assert told.heard[-1] == ("a", PROBE)  # the longest waiting probes first
    assert ep.probe_deadline("a") == 10.0 + FIRST_PROBE_GAP
    assert ep.probe_deadline("b") == math.inf  # the others' timers are suspended
    gaps, now = [], 10.0
    for prober in "abcdab":
        due = ep.probe_deadline(prober)
        assert due < math.inf, prober
        gaps.append(due - now)
        now = due
        ep.probing(prober)
        assert ep.status().probing
        assert ep.failed(prober, now)  # still down: the turn passes on
        ep.wait(prober, now)
    assert gaps == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]  # doubling, up to probe_interval


def test_gaps_are_jittered_by_half_either_way() -> None:
    for draw, share in ((0.0, 0.5), (0.999, 1.499)):
        ep, _ = endpoint(down_after=1, probe_interval=2.0)
        ep.random = lambda draw=draw: draw
        ep.failed("a", 0.0)
        ep.wait("a", 0.0)
        assert ep.probe_deadline("a") == FIRST_PROBE_GAP * share


def test_a_connect_brings_it_up_and_every_waiting_member_is_told() -> None:
    ep, told = endpoint(down_after=1)
    ep.failed("a", 5.0)
    for member in "abc":
        ep.wait(member, 5.0)
    ep.probing("a")
    told.heard.clear()
    assert ep.connected("a", 12.5) == 7.5  # down for 7.5 s
    assert ep.up
    assert sorted(told.heard) == [("b", UP), ("c", UP)]
    assert ep.status().since == 12.5
    for member in "bc":  # each dials in its paced slot, and stops waiting
        assert ep.probe_deadline(member) == math.inf  # no prober any more
        ep.resume(member, 13.0)
    assert ep.waiting == 0


def test_the_prober_leaving_hands_the_turn_on() -> None:
    ep, told = endpoint(down_after=1)
    ep.failed("a", 0.0)
    ep.wait("a", 0.0)
    ep.wait("b", 0.0)
    ep.leave("a", 1.0)  # closed while it was the prober
    assert told.heard[-1] == ("b", PROBE)
    assert ep.probe_deadline("b") < math.inf
    assert ep.status().members == 3


def test_a_long_outage_is_reported_once() -> None:
    ep, _ = endpoint(down_after=1)
    ep.failed("a", 100.0)
    assert ep.due_report(159.0, 60.0) is None
    assert ep.due_report(161.0, 60.0) == 61.0
    assert ep.due_report(200.0, 60.0) is None  # once per outage
    ep.connected("a", 300.0)
    ep.failed("a", 400.0)
    assert ep.due_report(470.0, 60.0) == 70.0  # a new outage: reported again


def test_an_outage_of_any_length_keeps_the_gaps_at_probe_interval() -> None:
    """Thousands of failed probes (a day at 2 s): the gap stays probe_interval (the
    doubling was once computed as 2.0**n, which overflows past n = 1,023)."""
    ep, _ = endpoint(down_after=1, probe_interval=2.0)
    ep.failed("a", 0.0)
    now = 0.0
    for _ in range(5000):
        ep.wait("a", now)
        due = ep.probe_deadline("a")
        now = due
        ep.probing("a")
        ep.failed("a", now)
    ep.wait("a", now)
    assert ep.probe_deadline("a") - now == 2.0


def test_no_probe_before_the_servers_retry_after() -> None:
    ep, _ = endpoint(down_after=1, probe_interval=2.0)
    assert ep.failed("a", 10.0, retry_after=30.0)  # HTTP 503, Retry-After: 30
    ep.wait("a", 10.0)
    assert ep.probe_deadline("a") == 40.0  # not the first gap (0.5 s): the server's word
    ep.probing("a")
    ep.failed("a", 40.2)  # refused: the gaps take over again
    ep.wait("a", 40.2)
    assert ep.probe_deadline("a") == 40.2 + 2 * FIRST_PROBE_GAP
    ep.connected("b", 41.0)
    ep.resume("a", 41.0)  # told it is up, "a" reconnects
    ep.failed("c", 50.0)  # a new outage starts without the old Retry-After
    ep.wait("c", 50.0)
    assert ep.probe_deadline("c") == 50.0 + FIRST_PROBE_GAP


def test_the_status_says_when_the_next_probe_is_due_while_down() -> None:
    ep, _ = endpoint(down_after=1)
    assert ep.status().next_probe is None  # up: nothing to probe
    ep.failed("a", 10.0)
    assert ep.status().next_probe is None  # down, but nobody waits to probe yet
    ep.wait("a", 10.0)
    ep.wait("b", 10.0)
    status = ep.status()
    assert (status.probing, status.next_probe) == (False, 10.0 + FIRST_PROBE_GAP)
    ep.probing("a")  # its dial is in flight: probing, no next probe yet
    status = ep.status()
    assert (status.probing, status.next_probe) == (True, None)
    ep.failed("a", 10.6)
    ep.wait("a", 10.6)  # the turn passes to b, one doubled gap later
    assert ep.status().next_probe == 10.6 + 2 * FIRST_PROBE_GAP
    ep.connected("b", 11.0)
    assert ep.status().next_probe is None
