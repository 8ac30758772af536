"""An implementation and its spec, stepped side by side: :func:`run_steps`.

After each step the implementation's state, refusals, actions, timers, tasks and
(with a model) object are compared with what the spec says
(:mod:`fsm_live.testing.harness` describes every check); the first disagreement
is a :class:`~fsm_live.testing.steps.Mismatch` naming the walk, and the spec's
file, row and line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from fsm_live.errors import TransitionRefused
from fsm_live.spec import Registry, Spec, TransitionSpec
from fsm_live.testing.steps import (
    Expected,
    GuardOracle,
    Mismatch,
    Oracles,
    Step,
    TimerNotArmed,
    expect,
    expect_step,
)

__all__ = ("Adapter", "Walk", "run_steps")


class Adapter(Protocol):
    """An implementation under test, as the harness sees it.

    Two methods are required.  The harness also uses, when present: ``subject``
    (the implementation's object, for a registry's guard oracles and ``model``
    comparisons), ``observe(action_names)`` then ``actions()`` (the spec's
    actions run since the last call, in order), ``timers()`` (armed timers:
    name -> seconds left) with ``advance(seconds)``, and ``tasks()`` (names of
    the tasks running).  A method returning None reports nothing.
    """

    def fire(self, trigger: str, data: Mapping[str, Any]) -> bool:
        """Fire ``trigger`` with ``data`` (keyword event data).

        Returns True if the implementation accepted it (whether or not its state
        changed), False if it refused it (raised its "not allowed here" error).
        """
        ...

    def state(self) -> str:
        """The implementation's current state, by its spec name."""
        ...


class Walk:
    """An implementation and the spec, stepped side by side (see :func:`run_steps`)."""

    def __init__(
        self,
        spec: Spec,
        adapter: Adapter,
        oracles: Oracles,
        model: Callable[[], Any] | None,
        observe: Callable[[Any], Any] | None,
    ) -> None:
        self.spec = spec
        self.adapter = adapter
        self.oracles = oracles
        self.done: list[Step] = []
        self.subject = getattr(adapter, "subject", None)
        actions = spec.known.names("action")
        observe_actions = getattr(adapter, "observe", None)
        if observe_actions is not None:
            observe_actions(actions)
        self.state = adapter.state()
        if self.state != spec.initial:
            raise self.fail(
                f"the spec starts in {spec.initial}; the implementation is in {self.state}"
                f" ({self.where_state(spec.initial)})"
            )
        self._actions()  # what construction ran is not compared (libraries differ)
        self.armed = {t.name for t in spec.states[self.state].timers}
        #: The reference run's clock: it moves only when a timer expires.
        self.reference_now = 0.0
        self.reference = self._reference(model)
        self.observe = observe
        #: True when the adapter reports its timers: walks may let them expire.
        self.clocked = self._timers() is not None
        self.check_timers(entered=True)
        self.check_tasks()
        self.check_model()

    # -- the reference run of the spec on the user's object --------------------------------

    def _reference(self, model: Callable[[], Any] | None) -> Any:
        if model is None:
            return None
        registry = self.oracles.registry
        if registry is None:
            raise TypeError("check_implementation(model=...) needs the registry= to run")
        from fsm_live.runner import UserRun, run_machine

        run = UserRun(run_machine(self.spec, registry), model())
        run.start(self.reference_now)
        return run

    # -- messages -------------------------------------------------------------------------

    def fail(self, message: str, step: Step | None = None) -> Mismatch:
        walk = [*self.done, step] if step is not None else self.done
        return Mismatch(f"after {list(self.done)!r}: {message}", walk)

    def where_state(self, state: str) -> str:
        line = self.spec.states[state].line
        return f"states.{state}, at {self.spec.source}:{line}" if line else f"states.{state}"

    def where_row(self, row: TransitionSpec) -> str:
        return f"at {self.spec.source}:{row.line}" if row.line else f"in {self.spec.source}"

    def describe(self, expected: Expected, state: str, step: Step) -> str:
        values = ", ".join(f"{name}={value}" for name, value in expected.guards.items())
        with_guards = f" with {values}" if values else ""
        what = repr(step)
        if expected.outcome == "ignored":
            return f"ignores {what} in {state} (nothing changes; {self.where_state(state)})"
        if expected.outcome == "blocked":
            return (
                f"takes no row for {what} from {state}{with_guards} (nothing changes; "
                f"{self.where_state(state)})"
            )
        row = expected.row
        assert row is not None
        dest = state if row.internal else row.dest
        fired = f" (it fires {expected.trigger})" if step.elapse else ""
        return (
            f"takes {row.item} ({state} -> {dest}{row.guard_label}) for {what}{fired}"
            f"{with_guards}, {self.where_row(row)}"
        )

    # -- one step ---------------------------------------------------------------------------

    def step(self, step: Step) -> str:
        try:
            return self._step(step)
        except Mismatch as exc:
            if not exc.walk or exc.walk[-1] is not step:
                exc.walk = (*self.done, step)
            raise

    def _step(self, step: Step) -> str:
        spec, adapter, state = self.spec, self.adapter, self.state
        if step.elapse:
            if step.trigger not in self.armed:
                raise TimerNotArmed(f"step {step!r}: the spec has no {step.trigger} armed now")
            expected = self._expect_elapse(step)
            accepted = self._elapse(step)
        else:
            expected = expect_step(spec, state, step, self.oracles, self.subject)
            try:
                accepted = adapter.fire(step.trigger, step.data)
            except Exception as exc:
                raise self.fail(
                    f"the implementation raised {type(exc).__name__}: {exc} on {step!r} in "
                    f"{state}; the spec {self.describe(expected, state, step)}"
                ) from exc
        now = adapter.state()
        if expected.outcome == "refused":
            why = (
                "a final state absorbs every trigger"
                if spec.states[state].final
                else "no row leaves it on that trigger"
            )
            if accepted:
                raise self.fail(
                    f"the spec refuses {step!r} in {state} ({why}; {self.where_state(state)}); "
                    f"the implementation accepted it and is in {now}"
                )
            if now != state:
                raise self.fail(
                    f"the implementation refused {step!r} in {state} but its state changed to {now}"
                )
        elif not accepted:
            raise self.fail(
                f"the implementation refused {step!r} in {state}; the spec "
                f"{self.describe(expected, state, step)}"
            )
        elif now != expected.dest:
            raise self.fail(
                f"the spec {self.describe(expected, state, step)}; the implementation is in {now}"
            )
        self.check_actions(expected, state, step)
        entered = expected.outcome == "taken" and not (
            expected.row is not None and expected.row.internal
        )
        if step.elapse:
            self.armed.discard(step.trigger)
        if entered:
            self.armed = {t.name for t in spec.states[now].timers}
        self.step_reference(step, expected)
        self.done.append(step)
        self.state = now
        self.check_timers(entered=entered)
        self.check_tasks()
        self.check_model()
        return now

    def _expect_elapse(self, step: Step) -> Expected:
        return expect(
            self.spec,
            self.state,
            step,
            self.oracles.guards,
            registry=self.oracles.registry,
            subject=self.subject,
        )

    def _elapse(self, step: Step) -> bool:
        timers = self._timers()
        if timers is None or step.trigger not in timers:
            raise self.fail(
                f"the spec has timer {step.trigger} armed in {self.state} "
                f"({self.where_state(self.state)}); the implementation has "
                f"{sorted(timers or {}) or 'none'} armed"
            )
        advance = getattr(self.adapter, "advance", None)
        assert advance is not None  # timers() without advance(): an adapter's mistake
        try:
            advance(timers[step.trigger])
        except Exception as exc:
            raise self.fail(
                f"the implementation raised {type(exc).__name__}: {exc} when its timer "
                f"{step.trigger} expired in {self.state}"
            ) from exc
        return True

    # -- what else is compared ------------------------------------------------------------

    def _actions(self) -> list[str] | None:
        actions = getattr(self.adapter, "actions", None)
        return None if actions is None else actions()

    def _timers(self) -> Mapping[str, float] | None:
        timers = getattr(self.adapter, "timers", None)
        return None if timers is None else timers()

    def check_actions(self, expected: Expected, state: str, step: Step) -> None:
        ran = self._actions()
        if ran is None:
            return
        row = expected.row
        wanted: list[str] = []
        if expected.outcome == "taken" and row is not None:
            wanted += row.before
            if not row.internal:
                wanted += [*self.spec.states[state].on_exit, *self.spec.states[row.dest].on_enter]
            wanted += row.after
        if list(ran) != wanted:
            spec_says = (
                f"{self.describe(expected, state, step)} and runs {wanted}"
                if wanted
                else f"{self.describe(expected, state, step)} and runs no action"
            )
            raise self.fail(f"the implementation ran {list(ran)}; the spec {spec_says}")

    def check_timers(self, *, entered: bool) -> None:
        timers = self._timers()
        if timers is None:
            return
        state = self.state
        armed = set(timers)
        if armed != self.armed:
            extra, missing = sorted(armed - self.armed), sorted(self.armed - armed)
            parts = [f"{name} is still armed" for name in extra] + [
                f"{name} is not armed" for name in missing
            ]
            raise self.fail(
                f"in {state}, the implementation's timer {'; '.join(parts)}: the spec arms "
                f"{sorted(self.armed) or 'none'} there ({self.where_state(state)})"
            )
        registry = self.oracles.registry
        if not entered or registry is None:
            return
        for name in sorted(armed):
            if ("timer", name) not in registry:
                continue
            seconds = float(registry.lookup("timer", name)(self.subject))
            if not math.isclose(timers[name], seconds, rel_tol=1e-6, abs_tol=1e-9):
                raise self.fail(
                    f"entering {state}, the implementation armed {name} for "
                    f"{timers[name]:g} s; the registry's {name}(subject) says {seconds:g} s "
                    f"({self.where_state(state)})"
                )

    def check_tasks(self) -> None:
        tasks = getattr(self.adapter, "tasks", None)
        running: Collection[str] | None = None if tasks is None else tasks()
        if running is None:
            return
        wanted = set(self.spec.states[self.state].tasks)
        if set(running) != wanted:
            raise self.fail(
                f"in {self.state}, the implementation runs the tasks {sorted(running)}; the "
                f"spec runs {sorted(wanted)} there ({self.where_state(self.state)})"
            )

    def step_reference(self, step: Step, expected: Expected) -> None:
        run = self.reference
        if run is None:
            return
        try:
            if step.elapse:
                deadline = run.timers.get(step.trigger)
                if deadline is not None:
                    self.reference_now = max(self.reference_now, deadline)
                    run.expire(step.trigger, self.reference_now)
            else:
                run.fire(step.trigger, self.reference_now, **step.data)
        except TransitionRefused:
            pass

    def check_model(self) -> None:
        run = self.reference
        if run is None:
            return
        observe = self.observe or _attributes(run.subject)
        mine, theirs = observe(self.subject), observe(run.subject)
        if mine != theirs:
            raise self.fail(
                f"in {self.state}, the implementation's object reads {mine!r}; the spec run "
                f"on the model with the registry's actions reads {theirs!r}"
            )


def _attributes(model: Any) -> Callable[[Any], Any]:
    """Compare an object's values of the model's attributes (``vars`` of the model)."""
    names = sorted(vars(model)) if hasattr(model, "__dict__") else []

    def observe(obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name, "<missing>") for name in names}

    return observe


def run_steps(
    spec: Spec,
    adapter: Adapter,
    steps: Sequence[Step],
    guards: Mapping[str, GuardOracle] | None = None,
    *,
    registry: Registry | None = None,
    model: Callable[[], Any] | None = None,
    observe: Callable[[Any], Any] | None = None,
) -> list[str]:
    """Fire ``steps`` on ``adapter``, checking each against the spec; the states visited
    (the initial one, then one per step).

    ``guards``, ``registry``, ``model`` and ``observe`` are described in the
    module docstring.  Raises :class:`Mismatch` at the first disagreement.
    """
    walk = Walk(spec, adapter, Oracles(spec, guards or {}, registry), model, observe)
    return [walk.state, *(walk.step(step) for step in steps)]
