"""Tests of the pomodoro timer (pomodoro.py): its schedule in virtual time, and its
invariants under random triggers with its own guards, actions and timers."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pomodoro import SPEC, Pomodoro, registry, runner
from trio.testing import MockClock

from fsm_live.testing import spec_state_machine

# Random triggers, clock jumps and timers on a new Pomodoro per case, checked
# against the spec: rows, actions, tasks and timers of every state.
TestPomodoro = spec_state_machine(SPEC, registry=registry, subject=Pomodoro).TestCase

virtual_time = pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})]
)


@pytest.mark.anyio
@virtual_time
async def test_a_round_is_four_sessions_and_three_short_breaks_then_a_long_one(
    anyio_backend: Any,
) -> None:
    pomodoro = Pomodoro()  # the real durations: virtual time makes them instant
    async with runner.run(pomodoro) as machine:
        start = anyio.current_time()
        machine.fire("start")
        await machine.wait_for("LONG_BREAK")
        await machine.wait_for("FOCUS")
        elapsed = anyio.current_time() - start
        machine.fire("stop")
    assert elapsed == (4 * 25 + 3 * 5 + 15) * 60
    assert (pomodoro.rounds, pomodoro.sessions) == (1, 0)
    assert pomodoro.chimes == ["SHORT_BREAK"] * 3 + ["LONG_BREAK"]


@pytest.mark.anyio
@virtual_time
async def test_a_pause_abandons_the_session(anyio_backend: Any) -> None:
    pomodoro = Pomodoro()
    async with runner.run(pomodoro) as machine:
        machine.fire("start")
        await anyio.sleep(20 * 60)
        machine.fire("pause")
        assert machine.state == "IDLE"
        assert machine.run.next_deadline() is None  # the focus timer is gone
        machine.fire("start")  # a new session: 25 minutes again
        await anyio.sleep(24 * 60)
        assert machine.state == "FOCUS"
        await machine.wait_for("SHORT_BREAK")
        machine.fire("stop")
    assert pomodoro.sessions == 1
