"""fsm_live.core.ledger: what happens to every outbound frame, decided without I/O.

docs/architecture.md, rule 10: a frame ``send()`` accepted is never dropped
silently; one not yet out of the process when its link breaks goes out again, in
order, on the next link; one awaiting an acknowledgement is kept until it comes
(or its deadline), and sent again after each break until then.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_live.core.ledger import DONE, QUEUED, SENT, WRITTEN, Ledger
from fsm_live.errors import BufferFull


def write_all(ledger: Ledger, link: int, written: int = 0, size: int = 10) -> int:
    """Write every pending entry on ``link`` (``size`` bytes each); the new byte count."""
    for entry in ledger.pending():
        written += size
        ledger.written(entry, link, written)
    return written


def test_a_frame_is_done_once_it_left_the_process() -> None:
    ledger = Ledger(10)
    entry = ledger.queue("a")
    assert (len(ledger), ledger.has_queued, entry.state) == (1, True, QUEUED)
    end = write_all(ledger, link=1)
    assert entry.state == WRITTEN
    assert ledger.has_written
    ledger.confirm(1, end - 1)  # one byte still in the write buffer
    assert entry.state == WRITTEN
    ledger.confirm(1, end)
    assert (entry.state, len(ledger)) == (DONE, 0)


def test_a_broken_link_sends_its_unwritten_frames_again_in_order() -> None:
    ledger = Ledger(10)
    frames = [ledger.queue(name) for name in "abcd"]
    write_all(ledger, link=1)
    ledger.confirm(1, 20)  # a and b left; c and d were still in the buffer
    assert [e.state for e in frames] == [DONE, DONE, WRITTEN, WRITTEN]
    assert ledger.link_lost(1) == 2
    assert [e.frame for e in ledger.pending()] == ["c", "d"]
    later = ledger.queue("e")
    assert [e.frame for e in ledger.pending()] == ["c", "d", "e"]  # the old ones first
    end = write_all(ledger, link=2)
    ledger.confirm(2, end)
    assert len(ledger) == 0
    assert later.state == DONE


def test_an_acknowledged_frame_waits_for_its_ack_and_survives_breaks() -> None:
    ledger = Ledger(10)
    entry = ledger.queue("request", ack_id="m1")
    end = write_all(ledger, link=1)
    ledger.confirm(1, end)
    assert entry.state == SENT
    assert ledger.awaiting_ack == 1
    assert ledger.link_lost(1) == 1  # no ack came: it goes out again
    assert [e.frame for e in ledger.pending()] == ["request"]
    end = write_all(ledger, link=2)
    ledger.confirm(2, end)
    assert ledger.acknowledge("m1") is entry
    assert (entry.state, len(ledger), ledger.awaiting_ack) == (DONE, 0, 0)
    assert ledger.acknowledge("m1") is None  # twice: nothing
    assert ledger.acknowledge("never sent") is None


def test_an_ack_that_overtakes_the_resend_stops_it() -> None:
    ledger = Ledger(10)
    entry = ledger.queue("request", ack_id=1)
    write_all(ledger, link=1)
    ledger.link_lost(1)
    assert ledger.acknowledge(1) is entry  # the answer came on the old link after all
    assert list(ledger.pending()) == []
    assert not ledger.has_queued


def test_deadlines_expire_entries_oldest_first_and_only_live_ones() -> None:
    ledger = Ledger(10)
    late = ledger.queue("late", ack_id=1, deadline=20.0)
    early = ledger.queue("early", ack_id=2, deadline=10.0, handle="h2")
    acked = ledger.queue("acked", ack_id=3, deadline=5.0)
    ledger.acknowledge(3)
    assert acked.state == DONE
    assert ledger.next_deadline() == 10.0  # the acked one no longer counts
    assert ledger.expire(9.9) == []
    assert ledger.expire(10.0) == [early]
    assert early.handle == "h2"
    assert ledger.acknowledge(2) is None  # expired: its ack is of nothing any more
    assert ledger.next_deadline() == 20.0
    assert ledger.expire(math.inf) == [late]
    assert (len(ledger), ledger.next_deadline()) == (0, math.inf)


def test_the_bound_is_explicit() -> None:
    ledger = Ledger(2)
    ledger.queue("a")
    ledger.queue("b", ack_id=1)
    with pytest.raises(BufferFull, match="maximum of 2"):
        ledger.queue("c")
    with pytest.raises(BufferFull):
        ledger.check_room()
    ledger.acknowledge(1)
    ledger.queue("c")


def test_an_ack_id_awaited_twice_is_refused() -> None:
    ledger = Ledger(5)
    ledger.queue("a", ack_id="x")
    with pytest.raises(ValueError, match="already awaiting"):
        ledger.queue("b", ack_id="x")


def test_done_entries_behind_a_late_ack_do_not_pile_up() -> None:
    """A frame whose ack never comes keeps its place; the many done behind it are
    compacted away (memory stays proportional to the live frames)."""
    ledger = Ledger(10_000)
    ledger.queue("stuck", ack_id="never")
    written = 0
    for n in range(5000):
        entry = ledger.queue(str(n))
        written += 10
        ledger.written(entry, 1, written)
        ledger.confirm(1, written)
    assert len(ledger) == 1
    assert len(ledger._entries) <= 2 * len(ledger) + 64


def test_drain_hands_back_every_live_entry() -> None:
    ledger = Ledger(10)
    a = ledger.queue("a", handle="ha")
    b = ledger.queue("b", ack_id=1, handle="hb")
    write_all(ledger, 1)
    assert ledger.drain() == [a, b]
    assert (len(ledger), ledger.has_queued, ledger.has_written) == (0, False, False)
    assert a.state == b.state == DONE


# -- the contract as a property -------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.booleans()),  # with an ack id or not
        st.tuples(st.just("write"), st.integers(0, 5)),  # write up to n pending frames
        st.tuples(st.just("confirm"), st.integers(0, 60)),  # bytes the OS took
        st.tuples(st.just("ack"), st.integers(0, 30)),
        st.tuples(st.just("break"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_every_frame_is_delivered_once_confirmed_or_acknowledged(
    ops: list[tuple[str, int]],
) -> None:
    """Whatever happens, a frame leaves the ledger only when the OS took it (and no
    ack is awaited) or its ack came; the links carry every frame in send order; and a
    frame without an ack id is written to a link that keeps it at most once."""
    ledger = Ledger(1000)
    link, written, confirmed = 1, 0, 0
    sent: list[tuple[str, object]] = []  # (frame, ack id)
    carried: dict[int, list[str]] = {}  # link -> frames written on it, in order
    for op, arg in ops:
        if op == "send":
            n = len(sent)
            ack_id = n if arg else None
            ledger.queue(f"f{n}", ack_id=ack_id)
            sent.append((f"f{n}", ack_id))
        elif op == "write":
            for count, entry in enumerate(ledger.pending()):
                if count >= arg:
                    break
                written += 10
                ledger.written(entry, link, written)
                carried.setdefault(link, []).append(str(entry.frame))
        elif op == "confirm":
            confirmed = min(written, confirmed + arg)
            ledger.confirm(link, confirmed)
        elif op == "ack":
            ledger.acknowledge(arg)
        else:
            ledger.link_lost(link)
            link, written, confirmed = link + 1, 0, 0
        # Frames on each link go in send order (a resend starts a new link's sequence).
        for frames in carried.values():
            numbers = [int(frame[1:]) for frame in frames]
            assert numbers == sorted(numbers)
        live = [e for e in ledger._entries if e.state != DONE]
        assert len(ledger) == len(live)
    # Finally: confirm everything, ack everything; nothing may remain.
    for _ in range(len(sent) + 1):
        for entry in ledger.pending():
            written += 10
            ledger.written(entry, link, written)
        ledger.confirm(link, written)
        for _, ack_id in sent:
            if ack_id is not None:
                ledger.acknowledge(ack_id)
    assert len(ledger) == 0
