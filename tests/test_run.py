"""fsm_live.core.run: any spec run on its user's object, sans-I/O.

A kettle (not a connection): a timer that fires a trigger, a task per state with
generations, a guard with an argument and actions called with the user's object,
all with explicit ``now`` and no event loop.
"""

from __future__ import annotations

from typing import Any

import pytest

from fsm_live.core.effects import CancelTask, CancelTimer, Emit, ScheduleTimer, StartTask
from fsm_live.core.machine import SpecMachine
from fsm_live.core.run import SpecRun
from fsm_live.errors import SpecError, TransitionRefused
from fsm_live.spec import Registry, Spec

SPEC = Spec.from_mapping(
    {
        "name": "kettle",
        "initial": "OFF",
        "guards": {"full_enough": {"args": ["litres"]}},
        "actions": {"log_entry": {}, "count_boils": {}},
        "tasks": {"heat": {}},
        "timers": {"boil_time": {}},
        "states": {
            "OFF": {},
            "HEATING": {
                "tasks": ["heat"],
                "timers": {"boil_time": "boiled"},
                "on_enter": ["log_entry"],
            },
            "BOILED": {"on_enter": ["log_entry"]},
            "BROKEN": {"final": True},
        },
        "transitions": [
            {
                "trigger": "switch_on",
                "source": "OFF",
                "dest": "HEATING",
                "conditions": ["full_enough"],
            },
            {"trigger": "boiled", "source": "HEATING", "dest": "BOILED", "after": ["count_boils"]},
            {"trigger": "switch_off", "source": ["HEATING", "BOILED"], "dest": "OFF"},
            {"trigger": "drop", "source": ["OFF", "HEATING", "BOILED"], "dest": "BROKEN"},
        ],
    }
)


class Kettle:
    """The user's object: what the guards, actions and timers read and write."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.boils = 0
        self.power = 2.0  # kW: the boil time depends on it


registry = Registry("kettle")


@registry.guard
def full_enough(kettle: Kettle, litres: float) -> bool:
    return litres >= 0.5


@registry.action
def log_entry(kettle: Kettle) -> None:
    kettle.entries.append("entered")


@registry.action
def count_boils(kettle: Kettle) -> None:
    kettle.boils += 1


@registry.timer
def boil_time(kettle: Kettle) -> float:
    return 240.0 / kettle.power


@registry.task
async def heat(context: Any) -> None:  # run by a driver; never awaited here
    raise AssertionError("a sans-I/O run starts nothing itself")


MACHINE = SpecMachine(SPEC, registry=registry)


def test_a_run_fires_with_event_data_and_calls_bindings_with_the_users_object() -> None:
    kettle = Kettle()
    run = SpecRun(MACHINE, subject=kettle)
    assert run.fire("switch_on", 0.0, litres=0.2) == []  # the guard refused: nothing
    assert run.state == "OFF"
    effects = run.fire("switch_on", 10.0, litres=1.0, reason="morning")
    assert effects == [
        StartTask("heat", 1),
        ScheduleTimer("boil_time", 130.0),  # 240 / 2 kW, from its binding
        Emit(effects[-1].record),  # type: ignore[union-attr]
    ]
    record = effects[-1].record  # type: ignore[union-attr]
    assert (record.source, record.trigger, record.dest, record.reason) == (
        "OFF",
        "switch_on",
        "HEATING",
        "morning",
    )
    assert kettle.entries == ["entered"]
    assert run.next_deadline() == 130.0
    assert run.handle_timer(129.9) == []
    effects = run.handle_timer(130.0)
    assert [type(e).__name__ for e in effects] == ["CancelTask", "Emit"]
    assert effects[0] == CancelTask("heat", 1)
    assert (run.state, kettle.boils, kettle.entries) == ("BOILED", 1, ["entered", "entered"])
    assert run.next_deadline() is None


def test_leaving_a_state_cancels_its_tasks_and_timers() -> None:
    run = SpecRun(MACHINE, subject=Kettle())
    run.fire("switch_on", 0.0, litres=1)
    effects = run.fire("switch_off", 5.0)
    assert effects[:2] == [CancelTask("heat", 1), CancelTimer("boil_time")]
    assert run.timers == {}
    assert run.is_current(2)
    assert not run.is_current(1)


def test_refused_triggers_and_final_states() -> None:
    run = SpecRun(MACHINE, subject=Kettle())
    with pytest.raises(TransitionRefused, match="'boiled' is not allowed in state OFF"):
        run.fire("boiled", 0.0)
    run.fire("drop", 1.0)
    assert run.is_final
    assert not run.allows("switch_on")


def test_a_timer_bound_to_nothing_is_an_error_naming_it() -> None:
    no_timer = Registry("no_timer")
    no_timer.bind("guard", "full_enough", full_enough)
    no_timer.bind("action", "log_entry", log_entry)
    no_timer.bind("action", "count_boils", count_boils)
    run = SpecRun(SpecMachine(SPEC, registry=no_timer), subject=Kettle())
    with pytest.raises(SpecError, match="timer 'boil_time' is bound to nothing"):
        run.fire("switch_on", 0.0, litres=1)


def test_one_machine_serves_many_runs() -> None:
    first, second = Kettle(), Kettle()
    runs = [SpecRun(MACHINE, subject=first), SpecRun(MACHINE, subject=second)]
    runs[0].fire("switch_on", 0.0, litres=1)
    assert [run.state for run in runs] == ["HEATING", "OFF"]
    assert (first.entries, second.entries) == (["entered"], [])
