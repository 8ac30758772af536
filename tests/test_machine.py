"""fsm_live.core.machine: one transitions.Machine per spec, shared by every model;
no ``to_*`` shortcuts; triggers fired through :meth:`SpecMachine.fire`, refused when
the state has no transition for them; callbacks are the model's methods."""

from __future__ import annotations

from typing import Any

import pytest

from fsm_live.core.machine import CALLBACKS, SpecMachine
from fsm_live.errors import TransitionRefused, UsageError
from fsm_live.spec import Spec

#: Unusual names; a guarded edge, a shared-source row, a reset_failures edge and a
#: timer, so every column of the table reaches the Machine.
SPEC = Spec.from_mapping(
    {
        "name": "kettle",
        "initial": "cold",
        "states": {
            "cold": {},
            "heating": {"timers": {"open_timeout": "overheat"}},
            "boiling": {
                "success": True,
                "timers": {"heartbeat_timeout": "cool", "stability": None},
            },
            "cooling": {"timers": {"backoff": ["give_up", "reheat"]}},
            "broken": {"failed": True},
            "unplugged": {"final": True},
        },
        "transitions": [
            {"trigger": "switch_on", "source": "cold", "dest": "heating"},
            {"trigger": "boil", "source": "heating", "dest": "boiling"},
            {"trigger": "overheat", "source": "heating", "dest": "cooling"},
            {"trigger": "cool", "source": "boiling", "dest": "cooling"},
            {
                "trigger": "give_up",
                "source": "cooling",
                "dest": "broken",
                "conditions": ["exhausted"],
            },
            {"trigger": "reheat", "source": "cooling", "dest": "heating"},
            {"trigger": "repair", "source": "broken", "dest": "cold", "reset_failures": True},
            {
                "trigger": "unplug",
                "source": ["cold", "heating", "boiling", "cooling", "broken"],
                "dest": "unplugged",
            },
        ],
    }
)


class Model:
    """A model that records the Machine's callbacks (it only records, as Lifecycle does)."""

    def __init__(self, state: str, *, exhausted: bool = False) -> None:
        self.state = state
        self.is_exhausted = exhausted
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def exhausted(self, event_data: Any) -> bool:
        return self.is_exhausted

    def retryable(self, event_data: Any) -> bool:
        return True

    def _record(self, name: str, event_data: Any) -> None:
        self.calls.append((name, self.state, dict(event_data.kwargs)))

    def _on_enter(self, event_data: Any) -> None:
        self._record("enter", event_data)

    def _on_exit(self, event_data: Any) -> None:
        self._record("exit", event_data)

    def _on_transition(self, event_data: Any) -> None:
        self._record("transition", event_data)

    def _on_reset_failures(self, event_data: Any) -> None:
        self._record("reset_failures", event_data)


@pytest.fixture(scope="module")
def machine() -> SpecMachine:
    return SpecMachine(SPEC)


def test_the_callbacks_are_the_models_methods() -> None:
    assert set(CALLBACKS) == {"on_enter", "on_exit", "after_state_change", "reset_failures"}
    for method in CALLBACKS.values():
        assert callable(getattr(Model, method))


def test_allowed_triggers_per_state_come_from_the_spec(machine: SpecMachine) -> None:
    assert machine.allowed == {
        "cold": {"switch_on", "unplug"},
        "heating": {"boil", "overheat", "unplug"},
        "boiling": {"cool", "unplug"},
        "cooling": {"give_up", "reheat", "unplug"},
        "broken": {"repair", "unplug"},
        "unplugged": frozenset(),
    }
    assert all(isinstance(triggers, frozenset) for triggers in machine.allowed.values())


def test_the_timer_tables_come_from_the_spec(machine: SpecMachine) -> None:
    assert machine.timers["heating"]["open_timeout"].triggers == ("overheat",)
    assert machine.timers["cooling"]["backoff"].triggers == ("give_up", "reheat")
    assert machine.timers["boiling"]["stability"].triggers == ()
    assert machine.timers["cold"] == {}
    assert machine.states is SPEC.states
    assert machine.spec is SPEC


def test_there_are_no_auto_transitions(machine: SpecMachine) -> None:
    assert set(machine.machine.events) == set(SPEC.triggers)
    assert not any(name.startswith("to_") for name in machine.machine.events)
    model = Model("cold")
    with pytest.raises(TransitionRefused):
        machine.fire(model, "to_boiling")
    assert model.state == "cold"


def test_the_machine_has_no_models_and_binds_nothing_to_them(machine: SpecMachine) -> None:
    model = Model("cold")
    assert machine.fire(model, "switch_on")
    assert machine.machine.models == []
    assert not hasattr(model, "switch_on")  # no per-model bound triggers
    assert not hasattr(model, "is_cold")


def test_one_machine_drives_many_models_independently(machine: SpecMachine) -> None:
    kettles = [Model("cold") for _ in range(3)]
    machine.fire(kettles[0], "switch_on")
    machine.fire(kettles[1], "switch_on")
    machine.fire(kettles[1], "boil")
    machine.fire(kettles[2], "unplug")
    assert [k.state for k in kettles] == ["heating", "boiling", "unplugged"]
    # Callbacks reach only the model fired on.
    assert [name for name, _, _ in kettles[0].calls] == ["exit", "enter", "transition"]


def test_a_transition_taken_returns_true_and_calls_back_in_order(machine: SpecMachine) -> None:
    model = Model("cold")
    assert machine.fire(model, "switch_on", now=1.5, reason="started") is True
    assert model.state == "heating"
    data = {"now": 1.5, "reason": "started"}
    assert model.calls == [
        ("exit", "cold", data),
        ("enter", "heating", data),
        ("transition", "heating", data),
    ]


def test_reset_failures_runs_before_leaving(machine: SpecMachine) -> None:
    model = Model("broken")
    assert machine.fire(model, "repair")
    assert [(name, state) for name, state, _ in model.calls] == [
        ("reset_failures", "broken"),
        ("exit", "broken"),
        ("enter", "cold"),
        ("transition", "cold"),
    ]
    other = Model("cold")
    machine.fire(other, "switch_on")
    assert "reset_failures" not in [name for name, _, _ in other.calls]


def test_a_failed_guard_returns_false_and_stays(machine: SpecMachine) -> None:
    model = Model("cooling", exhausted=False)
    assert machine.fire(model, "give_up") is False
    assert model.state == "cooling"
    assert model.calls == []
    exhausted = Model("cooling", exhausted=True)
    assert machine.fire(exhausted, "give_up") is True
    assert exhausted.state == "broken"


def test_a_trigger_the_state_does_not_allow_is_refused(machine: SpecMachine) -> None:
    model = Model("cold")
    with pytest.raises(TransitionRefused) as caught:
        machine.fire(model, "boil")
    assert (caught.value.state, caught.value.trigger) == ("cold", "boil")
    assert isinstance(caught.value, UsageError)
    assert model.state == "cold"
    assert model.calls == []


def test_nothing_leaves_a_final_state(machine: SpecMachine) -> None:
    model = Model("unplugged")
    for trigger in SPEC.triggers:
        with pytest.raises(TransitionRefused):
            machine.fire(model, trigger)
    assert machine.machine.get_state("unplugged").final
    assert not machine.machine.get_state("cold").final


def test_an_unknown_trigger_is_refused(machine: SpecMachine) -> None:
    with pytest.raises(TransitionRefused):
        machine.fire(Model("cold"), "no_such_trigger")


def test_the_machine_starts_in_the_specs_initial_state(machine: SpecMachine) -> None:
    assert machine.machine.initial == "cold"


def test_a_plain_object_is_a_model_without_any_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: a plain model needs no private hooks; the registry's callables get it."""
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "specs" / "examples"
    monkeypatch.syspath_prepend(str(examples))
    import registries  # type: ignore[import-not-found]

    class Order(registries.Order):  # type: ignore[misc]
        state = "WAITING_FOR_PAYMENT"

    machine = SpecMachine(
        Spec.from_path(examples / "order_control.yaml"), registry=registries.order_control
    )
    order = Order()
    assert machine.fire(order, "add_to_order", amount=10)
    assert machine.fire(order, "receive_payment", amount=10)
    assert (order.state, order.total, order.payments) == ("PROCESSING", 10, [10])
    assert not any(hasattr(order, name) for name in CALLBACKS.values())


def test_the_subject_may_be_other_than_the_model() -> None:
    from fsm_live.core.machine import SubjectModel
    from fsm_live.spec import Registry

    spec = Spec.from_yaml(
        "initial: A\nactions: [note]\nstates: {A: {}, B: {final: true}}\n"
        "transitions: [{trigger: go, source: A, dest: B, before: [note]}]\n"
    )
    seen: list[object] = []
    registry = Registry("r")
    registry.bind("action", "note", seen.append)

    class Holder(SubjectModel):
        state = "A"
        subject = "the user's object"

    machine = SpecMachine(spec, registry=registry)
    assert machine.fire(Holder(), "go")
    assert seen == ["the user's object"]
