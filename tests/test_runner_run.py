"""fsm_live.runner.UserRun: a user's spec on the user's object, sans-I/O (explicit ``now``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fsm_live.core.effects import CancelTask, CancelTimer, Emit, ScheduleTimer, StartTask
from fsm_live.errors import SpecError, TransitionRefused, UsageError
from fsm_live.runner import Runner, UserRun, run_machine
from fsm_live.spec import Registry, Spec

EXAMPLES = Path(__file__).resolve().parent.parent / "specs" / "examples"

KETTLE = Spec.from_yaml(
    """\
name: kettle
initial: COLD
guards:
  full: {args: [litres], description: enough water to boil}
actions:
  light: {description: the lamp on}
  dark: {description: the lamp off}
  pour: {args: [litres]}
  beep: {}
timers:
  boil_time: {description: how long it takes to boil}
  keep_warm: {description: how long it stays warm}
tasks:
  watch: {description: a watcher of the temperature}
  sensor: {description: runs from the start}
states:
  COLD: {tasks: [sensor], on_enter: [dark], timers: {keep_warm: unplug}}
  HEATING: {tasks: [watch], on_enter: [light], on_exit: [dark], timers: {boil_time: boiled}}
  HOT: {ignore: [switch_on]}
  GONE: {final: true}
transitions:
  - {trigger: switch_on, source: COLD, dest: HEATING, conditions: [full]}
  - {trigger: fill, source: [COLD, HOT], internal: true, before: [pour]}
  - {trigger: boiled, source: HEATING, dest: HOT, after: [beep]}
  - {trigger: cool, source: HOT, dest: COLD}
  - {trigger: unplug, source: '*', dest: GONE}
""",
    "kettle.yaml",
)


@dataclass
class Kettle:
    """The user's object: what the registry's callables read and change."""

    litres: float = 0.0
    boil_seconds: float = 90.0
    warm_seconds: float = 600.0
    calls: list[str] = field(default_factory=list)


kettle = Registry("kettle")


@kettle.guard
def full(k: Kettle, litres: float) -> bool:
    return k.litres + (litres or 0) >= 1


@kettle.action
def light(k: Kettle) -> None:
    k.calls.append("light")


@kettle.action
def dark(k: Kettle) -> None:
    k.calls.append("dark")


@kettle.action
def pour(k: Kettle, litres: float) -> None:
    k.calls.append(f"pour {litres}")
    k.litres += litres


@kettle.action
def beep(k: Kettle) -> None:
    k.calls.append("beep")


@kettle.timer
def boil_time(k: Kettle) -> float:
    return k.boil_seconds


@kettle.timer
def keep_warm(k: Kettle) -> float:
    return k.warm_seconds


@kettle.task
async def watch(context: Any) -> None: ...


@kettle.task
async def sensor(context: Any) -> None: ...


def started(subject: Kettle | None = None, now: float = 0.0) -> tuple[UserRun, list[Any]]:
    run = UserRun(run_machine(KETTLE, kettle), subject or Kettle())
    return run, run.start(now)


def test_the_initial_state_is_entered_like_any_other() -> None:
    k = Kettle()
    run, effects = started(k, now=5.0)
    assert effects == [StartTask("sensor", 1), ScheduleTimer("keep_warm", 605.0)]
    assert k.calls == ["dark"]
    assert run.next_deadline() == 605.0
    with pytest.raises(UsageError, match="already started"):
        run.start(6.0)


def test_a_transition_cancels_and_starts_tasks_with_generations_and_runs_actions() -> None:
    k = Kettle(litres=2)
    run, _ = started(k)
    effects = run.fire("switch_on", 10.0)
    *changes, emit = effects
    assert changes == [
        CancelTask("sensor", 1),
        CancelTimer("keep_warm"),
        StartTask("watch", 2),
        ScheduleTimer("boil_time", 100.0),
    ]
    assert isinstance(emit, Emit)
    assert (emit.record.source, emit.record.dest, emit.record.at) == ("COLD", "HEATING", 10.0)
    assert k.calls == ["dark", "light"]
    assert run.timers == {"boil_time": 100.0}


def test_timers_fire_their_trigger_on_explicit_now() -> None:
    k = Kettle(litres=2, boil_seconds=90)
    run, _ = started(k)
    run.fire("switch_on", 0.0)
    assert run.handle_timer(89.9) == []
    effects = run.handle_timer(90.0)
    assert run.state == "HOT"
    assert CancelTask("watch", 2) in effects
    assert k.calls[-2:] == ["dark", "beep"]  # exit action, then the row's after action
    assert run.next_deadline() is None


def test_timer_length_comes_from_the_users_object_and_is_checked() -> None:
    run, effects = started(Kettle(warm_seconds=0))
    assert ScheduleTimer("keep_warm", 0.0) in effects
    assert next(e for e in run.handle_timer(0.0) if isinstance(e, Emit)).record.dest == "GONE"
    bad = UserRun(run_machine(KETTLE, kettle), Kettle(warm_seconds=-1))
    with pytest.raises(UsageError, match=r"timer 'keep_warm' of state COLD returned -1"):
        bad.start(0.0)


def test_guards_read_the_users_object_and_event_data() -> None:
    k = Kettle()
    run, _ = started(k)
    assert run.fire("switch_on", 1.0) == []  # not full: no row passes, nothing happens
    assert run.state == "COLD"
    run.fire("fill", 2.0, litres=0.5)  # internal: no exit or entry action, no new generation
    assert (run.state, run.generation) == ("COLD", 1)
    assert run.fire("switch_on", 3.0, litres=0.5)  # 0.5 + 0.5 is enough
    assert run.state == "HEATING"
    assert k.calls == ["dark", "pour 0.5", "light"]


def test_ignored_refused_and_final() -> None:
    run, _ = started(Kettle(litres=1))
    with pytest.raises(TransitionRefused):
        run.fire("cool", 0.0)
    run.fire("switch_on", 0.0)
    run.handle_timer(1e9)
    assert run.fire("switch_on", 0.0) == []  # HOT ignores it
    run.fire("unplug", 0.0)
    assert run.is_final
    for trigger in KETTLE.triggers:
        with pytest.raises(TransitionRefused):
            run.fire(trigger, 0.0)


def test_a_stale_report_is_dropped() -> None:
    run, _ = started(Kettle(litres=1))
    run.fire("switch_on", 0.0)  # generation 2: watch runs
    assert run.report(1, "unplug", 1.0) == []  # the sensor of generation 1 is stale
    assert run.state == "HEATING"
    assert run.report(2, "cool", 1.0) == []  # refused in HEATING: dropped
    assert [e for e in run.report(2, "unplug", 1.0) if isinstance(e, Emit)]
    assert run.state == "GONE"


def test_fire_from_an_action_is_refused_and_fire_before_start() -> None:
    run = UserRun(run_machine(KETTLE, kettle), Kettle())
    with pytest.raises(UsageError, match="before start"):
        run.fire("switch_on", 0.0)
    spec = Spec.from_yaml(
        "initial: A\nactions: [again]\nstates: {A: {}, B: {}}\ntransitions:\n"
        "  - {trigger: go, source: A, dest: B, before: [again]}\n"
        "  - {trigger: back, source: B, dest: A}\n"
    )
    registry = Registry("again")
    holder: dict[str, UserRun] = {}
    registry.bind("action", "again", lambda subject: holder["run"].fire("back", 0.0))
    holder["run"] = run = UserRun(run_machine(spec, registry), None)
    run.start(0.0)
    with pytest.raises(UsageError, match="fired from inside a guard or action"):
        run.fire("go", 0.0)


def test_every_name_must_be_bound_even_packaged_ones() -> None:
    spec = Spec.from_path(EXAMPLES / "traffic_light.yaml")
    with pytest.raises(SpecError, match=r"traffic_light.yaml:\d+: transitions.5.unless: guard"):
        Runner(spec, Registry("empty"))
    timers = Spec.from_yaml(
        "initial: A\nstates: {A: {timers: {backoff: go}}, B: {final: true}}\n"
        "transitions: [{trigger: go, source: A, dest: B}]\n",
        "mine.yaml",
    )
    with pytest.raises(SpecError, match=r"mine.yaml:2: states.A.timers.backoff: timer 'backoff'"):
        Runner(timers, Registry("mine"))


def test_one_machine_per_spec_and_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries  # type: ignore[import-not-found]

    path = EXAMPLES / "order_control.yaml"
    first = Runner(path, registries.order_control)
    second = Runner(Spec.from_path(path), registries.order_control)  # an equal spec
    assert first.machine is second.machine
    runs = [second.run(registries.Order()) for _ in range(100)]
    assert {id(r.run.machine) for r in runs} == {id(first.machine)}
    assert first.machine.machine.models == []  # no per-model bindings either
    other = Registry("other")
    for binding in registries.order_control:
        other.bind(binding.kind, binding.name, binding.func)
    assert Runner(path, other).machine is not first.machine
    assert "registries" in sys.modules


def test_expire_picks_one_timer_due_or_not() -> None:
    run, _ = started(Kettle(litres=2, warm_seconds=600))
    with pytest.raises(KeyError):
        run.expire("boil_time", 0.0)  # not armed in COLD
    effects = run.expire("keep_warm", 1.0)  # long before its deadline
    assert run.state == "GONE"
    assert next(e for e in effects if isinstance(e, Emit)).record.trigger == "unplug"
