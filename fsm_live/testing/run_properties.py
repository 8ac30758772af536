"""Property tests of a user's spec running on the user's object (:mod:`fsm_live.runner`).

:func:`run_state_machine` (what :func:`~fsm_live.testing.spec_state_machine`
returns for a spec given with ``subject=``) is a Hypothesis
``RuleBasedStateMachine`` that starts a :class:`~fsm_live.runner.UserRun` on a
fresh user object and drives it with random triggers and event data (drawn for
the arguments the spec declares), clock jumps, timer expiries and task reports
(stale generations included), calling the registry's real guards, actions and
timers on that object.  After every step it checks:

* the state is one of the spec's; every transition is an edge of the spec (an
  internal row stays), and chained transitions connect;
* a trigger is refused exactly where the spec has no row and no ``ignore``, and
  a refused, ignored or blocked trigger (no row's guards pass) changes nothing
  and runs no action;
* the row taken is the first whose guards pass, the guards evaluated on the
  user's object and the event data;
* the actions run, in order, are the spec's: the row's ``before``, the source's
  ``on_exit``, the destination's ``on_enter``, the row's ``after`` (an internal
  row: ``before`` and ``after`` only); starting runs the initial state's
  ``on_enter``;
* the tasks running (replayed from the effects) are the current state's, all of
  its generation, from the start on (the initial state's too); each cancel
  names a running task;
* on entering a state its timers are armed, each ``timer(subject)`` seconds
  ahead (finite, not negative); no other timer is ever armed;
* a report from a task of an earlier generation changes nothing;
* final states absorb.

An exception raised by one of your guards, actions or timers fails the test
with its traceback, at the shortest walk Hypothesis finds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fsm_live.core.effects import CancelTask, Effect, Emit, ScheduleTimer, StartTask
from fsm_live.errors import TransitionRefused
from fsm_live.runner import UserRun, run_machine
from fsm_live.spec import Binding, Registry, Spec
from fsm_live.spec.vocabulary import Kind

__all__ = ("run_state_machine",)

#: What a spy records: (kind, name), in call order.
Call = tuple[Kind, str]


def _spied(registry: Registry, calls: list[Call]) -> Registry:
    """A copy of ``registry`` whose guards, actions and timers log their calls."""
    spy = Registry(f"{registry.name} (observed)")
    for binding in registry:
        spy.bind(binding.kind, binding.name, _spy(binding, calls))
    return spy


def _spy(binding: Binding, calls: list[Call]) -> Callable[..., Any]:
    func, key = binding.func, (binding.kind, binding.name)
    if binding.kind == "task":
        return func  # tasks never run here: only their start and cancel effects are checked

    def spy(subject: Any, **args: Any) -> Any:
        calls.append(key)
        return func(subject, **args)

    spy.__name__ = binding.name
    spy.__signature__ = _signature(func)  # type: ignore[attr-defined]
    return spy


def _signature(func: Callable[..., Any]) -> Any:
    import inspect

    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def run_state_machine(
    spec: Spec,
    registry: Registry,
    subject: Callable[[], Any],
    *,
    args: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> type[RuleBasedStateMachine]:
    """A ``RuleBasedStateMachine`` class checking a run of ``spec`` on ``subject()``.

    ``registry`` binds every name the spec uses (as for :class:`~fsm_live.runner.Runner`;
    raises :class:`~fsm_live.errors.SpecError` otherwise); ``subject`` returns a new
    user object for each test case; ``args`` gives strategies for declared event
    arguments by name (default: small integers).
    """
    calls: list[Call] = []
    machine = run_machine(spec, _spied(registry, calls))
    real = registry
    args = args or {}
    known = spec.known
    triggers = spec.triggers
    edges = {(source, t.trigger, t.dest) for source, t in spec.edges()}
    event_data = {
        trigger: st.fixed_dictionaries(
            {name: args.get(name, st.integers(0, 5)) for name in spec.event_args(trigger)}
        )
        for trigger in triggers
    }
    jumps = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=3600, allow_nan=False))

    def guard(run: UserRun, name: str, event: Mapping[str, Any]) -> bool:
        declaration = known.get("guard", name)
        names = declaration.args if declaration is not None else ()
        return bool(real.lookup("guard", name)(run.subject, **{a: event.get(a) for a in names}))

    def expected_row(run: UserRun, trigger: str, event: Mapping[str, Any]) -> Any:
        for row in spec.rows(run.state, trigger):
            if all(guard(run, g, event) for g in row.conditions) and not any(
                guard(run, g, event) for g in row.unless
            ):
                return row
        return None

    class SpecRunStateMachine(RuleBasedStateMachine):
        """Random triggers, clock jumps, timers and task reports against one run."""

        def __init__(self) -> None:
            super().__init__()
            self.now = 0.0
            self.run = UserRun(machine, subject())
            self.running: dict[str, int] = {}
            calls.clear()
            effects = self.run.start(0.0)
            assert [c for c in calls if c[0] == "action"] == [
                ("action", name) for name in spec.states[spec.initial].on_enter
            ], f"start ran {calls}, spec {spec.states[spec.initial].on_enter}"
            self.replay(spec.initial, effects)

        # -- rules ---------------------------------------------------------------------

        @precondition(lambda self: bool(triggers))
        @rule(data=st.data())
        def fire_trigger(self, data: st.DataObject) -> None:
            run = self.run
            accepted = [t for t in triggers if spec.accepts(run.state, t)]
            mostly_accepted = bool(accepted) and data.draw(st.booleans(), label="accepted")
            pool = accepted if mostly_accepted else list(triggers)
            trigger = data.draw(st.sampled_from(pool), label="trigger")
            event = data.draw(event_data[trigger], label="event data")
            self.fire(trigger, event)

        @rule(dt=jumps)
        def advance_clock(self, dt: float) -> None:
            self.now += dt
            self.expire()

        @precondition(lambda self: self.run.next_deadline() is not None)
        @rule()
        def jump_to_next_deadline(self) -> None:
            deadline = self.run.next_deadline()
            assert deadline is not None
            self.now = max(self.now, deadline)
            self.expire()

        @precondition(lambda self: bool(self.running) and bool(triggers))
        @rule(data=st.data(), stale=st.booleans())
        def task_reports(self, data: st.DataObject, stale: bool) -> None:
            run = self.run
            generation = run.generation - (1 if stale else 0)
            trigger = data.draw(st.sampled_from(triggers), label="reported trigger")
            event = data.draw(event_data[trigger], label="event data")
            before = run.state
            calls.clear()
            if stale:
                assert run.report(generation, trigger, self.now, **event) == []
                assert run.state == before, "a stale report changed the state"
                assert not calls, f"a stale report ran {calls}"
                return
            if not spec.accepts(before, trigger):
                assert run.report(generation, trigger, self.now, **event) == []
                assert run.state == before, "a refused report changed the state"
                assert not calls, f"a refused report ran {calls}"
                return
            self.fire(trigger, event, report=True)

        # -- checks --------------------------------------------------------------------

        def fire(self, trigger: str, event: Mapping[str, Any], *, report: bool = False) -> None:
            run = self.run
            before = run.state
            if not spec.accepts(before, trigger):
                calls.clear()
                try:
                    run.fire(trigger, self.now, **event)
                except TransitionRefused:
                    assert run.state == before, "a refused trigger changed the state"
                    assert not calls, f"a refused trigger ran {calls}"
                    return
                raise AssertionError(f"{trigger} accepted in {before}; the spec refuses it")
            ignored = trigger in spec.states[before].ignore
            row = None if ignored else expected_row(run, trigger, event)
            calls.clear()
            effects = (
                run.report(run.generation, trigger, self.now, **event)
                if report
                else run.fire(trigger, self.now, **event)
            )
            actions = [name for kind, name in calls if kind == "action"]
            if row is None:
                assert effects == [], f"{trigger} in {before}: no row, yet {effects}"
                assert run.state == before, f"{trigger} in {before}: no row, yet {run.state}"
                assert actions == [], f"no row taken, yet actions ran: {actions}"
                return
            wanted = [*row.before]
            if not row.internal:
                wanted += [*spec.states[before].on_exit, *spec.states[row.dest].on_enter]
            wanted += [*row.after]
            assert actions == wanted, (
                f"{trigger} from {before} ({row.item}): actions {actions}, the spec's {wanted}"
            )
            emits = [e for e in effects if isinstance(e, Emit)]
            assert len(emits) == 1, f"one row taken, {len(emits)} transitions emitted"
            record = emits[0].record
            assert (record.source, record.trigger, record.dest) in edges, record
            assert record.dest == row.dest == run.state, (
                f"{trigger} from {before}: the spec takes {row.item} to {row.dest}, "
                f"the run is in {run.state}"
            )
            self.replay(before, effects)

        def expire(self) -> None:
            run = self.run
            before = run.state
            calls.clear()
            effects = run.handle_timer(self.now)
            state = before
            for effect in effects:
                if isinstance(effect, Emit):
                    record = effect.record
                    edge = (record.source, record.trigger, record.dest)
                    assert edge in edges, f"{edge} is not an edge of the spec"
                    assert record.source == state, f"{edge} does not start at {state}"
                    state = record.dest
            assert state == run.state
            self.replay(before, effects)

        def replay(self, before: str, effects: list[Effect]) -> None:
            run = self.run
            if spec.states[before].final and before != spec.initial:
                assert effects == [], f"final state {before} produced {effects}"
            armed: dict[str, float] = {}
            for effect in effects:
                if isinstance(effect, StartTask):
                    assert effect.task not in self.running, f"{effect.task} started twice"
                    self.running[effect.task] = effect.generation
                elif isinstance(effect, CancelTask):
                    assert self.running.pop(effect.task, None) == effect.generation, (
                        f"cancelled {effect.task} gen {effect.generation}, not running"
                    )
                elif isinstance(effect, ScheduleTimer):
                    delay = effect.deadline - self.now
                    assert math.isfinite(delay), f"{effect.timer} in {delay}"
                    assert delay >= 0, f"{effect.timer} in {delay}"
                    armed[effect.timer] = effect.deadline
            declared = {timer.name for timer in spec.states[run.state].timers}
            if armed:
                assert set(armed) == declared, (
                    f"entering {run.state} armed {sorted(armed)}, spec {sorted(declared)}"
                )

        # -- invariants ----------------------------------------------------------------

        @invariant()
        def state_is_a_spec_state(self) -> None:
            assert self.run.state in spec.states, f"unknown state {self.run.state}"

        @invariant()
        def running_tasks_are_the_states_tasks(self) -> None:
            run = self.run
            expected = set(spec.states[run.state].tasks)
            assert set(self.running) == expected, (
                f"running {sorted(self.running)} in {run.state}, spec {sorted(expected)}"
            )
            assert all(g == run.generation for g in self.running.values()), (
                f"tasks {self.running} not of generation {run.generation}"
            )

        @invariant()
        def timers_are_the_states_timers(self) -> None:
            run = self.run
            armed = set(run.timers)
            declared = {timer.name for timer in spec.states[run.state].timers}
            assert armed <= declared, (
                f"timers {sorted(armed)} armed in {run.state}, spec {sorted(declared)}"
            )

    name = "".join(p.capitalize() for p in spec.name.replace("-", "_").split("_")) or "Spec"
    SpecRunStateMachine.__name__ = SpecRunStateMachine.__qualname__ = f"{name}RunStateMachine"
    return SpecRunStateMachine
