"""fsm_live.core.events and fsm_live.core.effects: the core's inputs and outputs are
immutable values.

What the docstrings promise beyond dataclass mechanics: every event is stamped with
``now``; events that come from a task carry the ``generation`` it was started with;
the ``Event`` and ``Effect`` unions name every class the modules export (so the
core's ``match`` cannot miss one); the documented defaults.
"""

from __future__ import annotations

import typing
from typing import Any

import attrs
import pytest

from fsm_live.core import effects, events
from fsm_live.core.effects import (
    CancelTask,
    CancelTimer,
    Emit,
    ScheduleTimer,
    StartTask,
    TransitionRecord,
)
from fsm_live.core.events import Close, LinkFailed, Reset, Rotate, Tick
from fsm_live.errors import Failure

#: Events the application (or the clock) makes, not a task: no generation.
FROM_THE_APPLICATION = {"Start", "Close", "Reset", "Tick"}
#: Events about a link (which outlives the state that dialled it: its id instead) or
#: about the endpoint (shared by connections: what happened to it instead).
ABOUT_A_LINK = {"LinkClosed": "link", "EndpointChanged": "what"}

EVENT_CLASSES = typing.get_args(events.Event)
EFFECT_CLASSES = typing.get_args(effects.Effect)


def _exported(module: Any, union: str) -> set[str]:
    return {name for name in module.__all__ if name != union}


def test_the_event_union_names_every_event() -> None:
    assert {cls.__name__ for cls in EVENT_CLASSES} == _exported(events, "Event")


def test_the_effect_union_names_every_effect_but_the_record() -> None:
    # TransitionRecord is carried by Emit; it is not an effect itself.
    assert {cls.__name__ for cls in EFFECT_CLASSES} == _exported(effects, "Effect") - {
        "TransitionRecord"
    }


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_every_event_is_stamped_with_now_first(cls: type) -> None:
    assert attrs.fields(cls)[0].name == "now"


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_events_from_tasks_carry_their_generation(cls: type) -> None:
    names = [field.name for field in attrs.fields(cls)]
    if cls.__name__ in FROM_THE_APPLICATION:
        assert "generation" not in names
    elif cls.__name__ in ABOUT_A_LINK:
        assert names[1] == ABOUT_A_LINK[cls.__name__]
    else:
        assert names[1] == "generation"


@pytest.mark.parametrize(
    "cls", [*EVENT_CLASSES, *EFFECT_CLASSES, TransitionRecord], ids=lambda cls: cls.__name__
)
def test_every_value_is_frozen_and_hashable(cls: type) -> None:
    assert attrs.has(cls)
    samples = {
        "now": 1.0,
        "generation": 2,
        "failure": Failure("network"),
        "rtt": 0.1,
        "ok": True,
        "task": "dial",
        "timer": "backoff",
        "deadline": 3.0,
        "record": TransitionRecord(1.0, "A", "B", "go"),
        "at": 1.0,
        "source": "A",
        "dest": "B",
        "trigger": "go",
        "kind": "token",
        "link": 4,
        "code": 1000,
        "handles": (None, "a handle"),
        "level": "WARNING",
        "message": "the application is behind",
        "what": "down",
    }
    kwargs = {
        field.name: samples[field.name]
        for field in attrs.fields(cls)
        if field.default is attrs.NOTHING
    }
    value, same = cls(**kwargs), cls(**kwargs)
    assert value == same
    assert hash(value) == hash(same)
    field = attrs.fields(cls)[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(value, field, samples[field])


def test_the_documented_defaults() -> None:
    assert Close(1.0).reason == "closed by the application"
    assert Reset(1.0).reason == "reset by the application"
    assert Rotate(1.0, 3).reason == "rotate"
    start = StartTask("dial", 4)
    assert (start.refresh_credentials, start.may_escalate) == (False, False)
    record = TransitionRecord(at=1.0, source="A", dest="B", trigger="go")
    assert (record.reason, record.error_class) == ("", None)


def test_values_differ_by_every_field() -> None:
    failure = Failure("network", "refused", kind="refused")
    assert LinkFailed(1.0, 1, failure) != LinkFailed(1.0, 2, failure)
    assert LinkFailed(1.0, 1, failure) != LinkFailed(1.0, 1, Failure("auth"))
    assert Tick(1.0) != Tick(2.0)
    assert CancelTask("dial", 1) != CancelTask("dial", 2)
    assert CancelTask("dial", 1) != StartTask("dial", 1)  # type: ignore[comparison-overlap]
    assert ScheduleTimer("backoff", 1.0) != ScheduleTimer("backoff", 2.0)
    assert CancelTimer("backoff") == CancelTimer("backoff")
    record = TransitionRecord(1.0, "A", "B", "go", reason="x")
    assert Emit(record) != Emit(attrs.evolve(record, error_class="network"))
