"""fsm_live.testing.VirtualClock: timers named, armed, cancelled and fired on demand."""

from __future__ import annotations

import functools

import pytest

from fsm_live.testing.clock import VirtualClock


def test_timers_fire_in_deadline_order_when_time_moves() -> None:
    clock = VirtualClock(start=100.0)
    fired: list[str] = []
    clock.call_later(5, fired.append, "b", name="second")
    clock.call_later(2, fired.append, "a", name="first")
    assert clock.armed() == {"first": 2.0, "second": 5.0}
    clock.advance(1.5)
    assert (fired, clock.time()) == ([], 101.5)
    clock.advance(10)
    assert fired == ["a", "b"]
    assert clock.time() == 111.5
    assert clock.armed() == {}


def test_a_cancelled_timer_is_not_armed_and_never_fires() -> None:
    clock = VirtualClock()
    fired: list[int] = []
    handle = clock.call_later(1, fired.append, 1, name="t")
    handle.cancel()
    handle.cancel()  # again: no effect
    assert clock.armed() == {}
    clock.advance(5)
    assert fired == []
    assert "cancelled" in repr(handle)


def test_a_timer_armed_by_a_callback_fires_if_due_within_the_advance() -> None:
    clock = VirtualClock()
    fired: list[float] = []

    def again() -> None:
        fired.append(clock.time())
        if len(fired) < 3:
            clock.call_later(1, again)

    clock.call_later(1, again)
    clock.advance(2.5)
    assert fired == [1.0, 2.0]
    assert clock.armed() == {"again": 0.5}  # named after the callback
    assert clock.call_at(10, fired.append, 0).when() == 10.0


def test_names_default_to_the_callback_and_bad_delays_are_refused() -> None:
    clock = VirtualClock()

    def refund() -> None: ...

    clock.call_later(3, refund)
    clock.call_later(4, functools.partial(print, "x"))
    assert set(clock.armed()) == {"refund", "print"}
    with pytest.raises(ValueError, match=r"timer 'refund': delay -1"):
        clock.call_later(-1, refund)
    with pytest.raises(ValueError, match="delay nan"):
        clock.call_later(float("nan"), refund, name="x")
