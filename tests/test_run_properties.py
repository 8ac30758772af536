"""spec_state_machine on the user's object: a spec and its registry as the docs write them,
run on the user's own object (issue 19, item 2), and planted bugs caught."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from fsm_live.core.effects import StartTask
from fsm_live.errors import SpecError
from fsm_live.runner import UserRun
from fsm_live.spec import Registry, Spec
from fsm_live.testing import spec_state_machine
from fsm_live.testing.run_properties import run_state_machine

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parent.parent / "specs" / "examples"
QUICK = settings(max_examples=60, stateful_step_count=30, deadline=None, database=None)
PLANTED = settings(
    max_examples=300,
    stateful_step_count=30,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries

    return registries


SUBJECTS = {
    "order_control": "Order",
    "grpc_connectivity": "Channel",
    "tcp": "Tcb",
    "light_delay": "Light",
}


@pytest.mark.parametrize("name", sorted(SUBJECTS))
def test_the_examples_pass_on_their_own_objects(name: str, registries: Any) -> None:
    machine = spec_state_machine(
        EXAMPLES / f"{name}.yaml",
        registry=getattr(registries, name),
        subject=getattr(registries, SUBJECTS[name]),
    )
    run_state_machine_as_test(machine, settings=QUICK)


def test_the_users_guard_reads_the_users_object(registries: Any) -> None:
    seen: list[Any] = []
    registry = Registry("order_control")
    for binding in registries.order_control:
        if binding.name != "payments_enough":
            registry.bind(binding.kind, binding.name, binding.func)

    @registry.guard
    def payments_enough(order: Any, amount: int) -> bool:
        seen.append(order)
        return bool(registries.payments_enough(order, amount))

    machine = spec_state_machine(
        EXAMPLES / "order_control.yaml", registry=registry, subject=registries.Order
    )
    run_state_machine_as_test(machine, settings=QUICK)
    assert seen
    assert all(type(order) is registries.Order for order in seen)


def test_a_registry_without_a_subject_says_what_to_pass(registries: Any) -> None:
    with pytest.raises(TypeError, match=r"pass subject=, a function returning a new one"):
        spec_state_machine(EXAMPLES / "order_control.yaml", registry=registries.order_control)


def test_an_unbound_name_is_named_with_file_and_line(registries: Any) -> None:
    with pytest.raises(SpecError, match=r"order_control.yaml:12: guards.payments_enough"):
        spec_state_machine(
            EXAMPLES / "order_control.yaml", registry=Registry("empty"), subject=registries.Order
        )


def test_a_raising_action_of_yours_fails_the_test(registries: Any) -> None:
    registry = Registry("order_control")
    for binding in registries.order_control:
        if binding.name != "record_item":
            registry.bind(binding.kind, binding.name, binding.func)

    @registry.action
    def record_item(order: Any, amount: int) -> None:
        if amount == 3:
            raise ValueError("no item costs 3")
        order.total += amount

    machine = spec_state_machine(
        EXAMPLES / "order_control.yaml", registry=registry, subject=registries.Order
    )
    with pytest.raises(ValueError, match="no item costs 3"):
        run_state_machine_as_test(machine, settings=PLANTED)


TASKS = Spec.from_yaml(
    """\
name: watcher
initial: IDLE
tasks: [watch, poll]
timers: [patience]
actions: [arrive, leave]
states:
  IDLE: {tasks: [watch], timers: {patience: give_up}, on_enter: [arrive], on_exit: [leave]}
  BUSY: {tasks: [watch, poll]}
  GONE: {final: true}
transitions:
  - {trigger: work, source: IDLE, dest: BUSY}
  - {trigger: rest, source: BUSY, dest: IDLE}
  - {trigger: give_up, source: IDLE, dest: GONE}
""",
    "watcher.yaml",
)


def watcher_registry() -> Registry:
    registry = Registry("watcher")

    async def watch(context: Any) -> None: ...
    async def poll(context: Any) -> None: ...

    registry.bind("task", "watch", watch)
    registry.bind("task", "poll", poll)
    registry.bind("timer", "patience", lambda subject: 60.0)
    registry.bind("action", "arrive", lambda subject: None)
    registry.bind("action", "leave", lambda subject: None)
    return registry


def test_a_spec_with_tasks_timers_and_actions_in_its_initial_state_passes() -> None:
    machine = spec_state_machine(TASKS, registry=watcher_registry(), subject=object)
    run_state_machine_as_test(machine, settings=QUICK)
    direct = run_state_machine(TASKS, watcher_registry(), object)
    assert direct.__name__ == "WatcherRunStateMachine"


@pytest.mark.parametrize(
    ("bug", "caught_by"),
    [
        ("initial tasks never start", r"running \[\] in IDLE, spec \['watch'\]"),
        ("an exit action runs twice", r"actions \['leave', 'leave'\], the spec's \['leave'\]"),
        ("a task keeps running", r"running \['poll', 'watch'\] in IDLE|poll started twice"),
    ],
)
def test_planted_bugs_in_a_run_are_caught(
    bug: str, caught_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if bug == "initial tasks never start":
        original_start = UserRun.start

        def start(self: UserRun, now: float) -> list[Any]:
            return [e for e in original_start(self, now) if not isinstance(e, StartTask)]

        monkeypatch.setattr(UserRun, "start", start)
    elif bug == "an exit action runs twice":
        original_exit = UserRun._on_exit

        def on_exit(self: UserRun, event_data: Any) -> None:
            original_exit(self, event_data)
            registry = self.machine.registry
            assert registry is not None
            for name in self.machine.states[self.state].on_exit:
                registry.lookup("action", name)(self.subject)

        monkeypatch.setattr(UserRun, "_on_exit", on_exit)
    else:
        original = UserRun._on_exit

        def keeps_poll(self: UserRun, event_data: Any) -> None:
            original(self, event_data)
            self._effects[:] = [e for e in self._effects if getattr(e, "task", None) != "poll"]

        monkeypatch.setattr(UserRun, "_on_exit", keeps_poll)
    machine = spec_state_machine(TASKS, registry=watcher_registry(), subject=object)
    with pytest.raises(AssertionError, match=caught_by):
        run_state_machine_as_test(machine, settings=PLANTED)
