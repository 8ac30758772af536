"""A spec run, sans-I/O: the state of one machine running a user's spec on the user's object.

A :class:`SpecRun` is a model of the shared :class:`RunMachine` of its spec and
registry (one Machine per spec and registry, :func:`run_machine`).  It never
sleeps, starts a task or reads a clock: every input carries ``now`` (seconds,
any monotonic clock) and returns the effects a driver carries out, the same
effect types as the connection lifecycle's (:mod:`fsm_live.core.effects`):

* :meth:`SpecRun.start` enters the initial state: its entry actions run, its
  timers are armed and its tasks started, as for any other state;
* :meth:`SpecRun.fire` fires a trigger with event data (the registry's guards
  and actions get the user's object and the arguments they declare);
* :meth:`SpecRun.next_deadline` / :meth:`SpecRun.handle_timer` (aioquic's
  ``get_timer`` / ``handle_timer``): a due timer fires its triggers, the first
  one whose row is taken wins;
* :meth:`SpecRun.report`: a task fires a trigger; a report from a task of an
  earlier generation (cancelled since) is dropped (rule 4).

Leaving a state (not by an internal row) cancels its tasks (:class:`CancelTask`
with their generation) and disarms its timers; entering one starts its tasks
(:class:`StartTask`, a new generation) and arms its timers, each for
``timer(subject)`` seconds, once the entry and ``after`` actions ran.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any, Final

from fsm_live.core.effects import (
    CancelTask,
    CancelTimer,
    Effect,
    Emit,
    ScheduleTimer,
    StartTask,
    TransitionRecord,
)
from fsm_live.core.machine import SpecMachine
from fsm_live.errors import SpecError, TransitionRefused, UsageError
from fsm_live.spec import Registry, Spec

__all__ = ("RunMachine", "SpecRun", "run_machine")


def _subject(run: SpecRun) -> Any:
    return run.subject


class RunMachine(SpecMachine):
    """A :class:`SpecMachine` whose every name is bound by ``registry``, called with the
    run's user object.  Build it with :func:`run_machine` (one per spec and registry).

    Raises :class:`~fsm_live.errors.SpecError` (``FILE:LINE: item: message``) when a
    guard, action, timer or task the spec uses is not bound, or bound to a callable
    that cannot take its call.  A packaged lifecycle name (``backoff``, ``dial`` ...)
    used by a spec run this way is the user's: it must be bound like any other.
    """

    __slots__ = ()

    def __init__(self, spec: Spec, registry: Registry) -> None:
        problems = registry.check(spec, unused=False)
        if problems:
            raise SpecError(problems)
        super().__init__(spec, registry=registry, subject=_subject)


_MACHINES: dict[tuple[Spec, int], tuple[Registry, RunMachine]] = {}
_LOCK: Final = threading.Lock()


def run_machine(spec: Spec, registry: Registry) -> RunMachine:
    """The one :class:`RunMachine` of ``spec`` and ``registry`` in this process.

    Equal specs and the same registry object give the same machine (rule 5: one
    Machine shared by all models); the registry should be complete by then (names
    bound later are not seen).  Raises :class:`~fsm_live.errors.SpecError` as
    :class:`RunMachine` does.
    """
    key = (spec, id(registry))
    with _LOCK:
        found = _MACHINES.get(key)
        if found is not None and found[0] is registry and found[1].spec == spec:
            return found[1]
        machine = RunMachine(spec, registry)
        _MACHINES[key] = (registry, machine)  # holds the registry: its id stays its own
        return machine


class SpecRun:
    """One run of a spec on ``subject`` (the user's object).  Not thread-safe: one
    driver feeds it.  Start it with :meth:`start` before anything else.

    ``state`` is the current state; ``generation`` grows on every state entry
    (tasks carry it); ``timers`` maps each armed timer to its deadline.
    """

    __slots__ = (
        "_dispatching",
        "_effects",
        "_entered",
        "_now",
        "generation",
        "machine",
        "started",
        "state",
        "subject",
        "timers",
    )

    def __init__(self, machine: RunMachine, subject: Any) -> None:
        self.machine = machine
        self.subject = subject
        self.state: str = machine.spec.initial
        self.generation = 0
        self.timers: dict[str, float] = {}
        self.started = False
        self._now = 0.0
        self._effects: list[Effect] = []
        self._entered = False
        self._dispatching = False

    def __repr__(self) -> str:
        return f"<SpecRun {self.machine.spec.name} {self.state} generation={self.generation}>"

    @property
    def is_final(self) -> bool:
        """True in a final state (it refuses every trigger)."""
        return self.machine.states[self.state].final

    # -- inputs ------------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Enter the initial state at ``now``: run its entry actions, arm its timers,
        start its tasks.  Raises :class:`UsageError` if already started."""
        if self.started:
            raise UsageError(f"{self!r} is already started")
        self.started = True
        with self._step(now) as effects:
            state = self.machine.states[self.state]
            registry = self.machine.registry
            assert registry is not None  # a RunMachine always has one
            for name in state.on_enter:
                args = self._args("action", name)
                registry.lookup("action", name)(self.subject, **dict.fromkeys(args))
            self._enter()
        return effects

    def fire(self, trigger: str, now: float, **data: Any) -> list[Effect]:
        """Fire ``trigger`` at ``now`` with event ``data``; the effects, in order.

        Returns no effects when the state ignores the trigger or no row's guards
        pass.  Raises :class:`TransitionRefused` if the state has no row for it (a
        final state refuses every trigger), and :class:`UsageError` before
        :meth:`start` or from inside a guard or action of this run (fire from a
        task instead: rule 1, one place fires triggers).
        """
        if not self.started:
            raise UsageError(f"fire({trigger!r}) before start()")
        with self._step(now) as effects:
            self.machine.fire(self, trigger, **data)
        return effects

    def report(self, generation: int, trigger: str, now: float, **data: Any) -> list[Effect]:
        """A task of ``generation`` fires ``trigger``: dropped (no effects) if the
        task is stale (its state was left since) or the state refuses it."""
        if generation != self.generation:
            return []
        try:
            return self.fire(trigger, now, **data)
        except TransitionRefused:
            return []

    def next_deadline(self) -> float | None:
        """The earliest armed timer's deadline, or None: call :meth:`handle_timer` then."""
        deadline = min(self.timers.values(), default=math.inf)
        return None if deadline == math.inf else deadline

    def handle_timer(self, now: float) -> list[Effect]:
        """Expire every timer due at ``now``, earliest first; the effects, in order.

        An expired timer fires its triggers in the spec's order until one takes a
        row (a later timer of a state left meanwhile is disarmed, not fired).
        """
        effects: list[Effect] = []
        while self.timers:
            name, deadline = min(self.timers.items(), key=lambda item: item[1])
            if deadline > now:
                break
            effects += self.expire(name, now)
        return effects

    def expire(self, name: str, now: float) -> list[Effect]:
        """Expire the armed timer ``name`` at ``now``, due or not (what
        :meth:`handle_timer` does at its deadline; tests use it to pick one of
        several timers due at once).  Raises ``KeyError`` if it is not armed."""
        del self.timers[name]
        effects: list[Effect] = []
        for trigger in self.machine.timers[self.state][name].triggers:
            step = self.fire(trigger, now)
            effects += step
            if any(isinstance(effect, Emit) for effect in step):
                break
        return effects

    # -- internals ---------------------------------------------------------------------

    def _step(self, now: float) -> _Step:
        if self._dispatching:
            raise UsageError(
                f"{self!r}: a trigger fired from inside a guard or action; fire it from "
                f"a task (its report reaches the run after this step)"
            )
        return _Step(self, now)

    def _args(self, kind: Any, name: str) -> tuple[str, ...]:
        declaration = self.machine.spec.known.get(kind, name)
        return declaration.args if declaration is not None else ()

    def _enter(self) -> None:
        """Start the state's tasks (a new generation) and arm its timers."""
        self.generation += 1
        state = self.machine.states[self.state]
        registry = self.machine.registry
        assert registry is not None
        for task in state.tasks:
            self._effects.append(StartTask(task, self.generation))
        for timer in state.timers:
            seconds = registry.lookup("timer", timer.name)(self.subject)
            if not _is_seconds(seconds):
                raise UsageError(
                    f"timer {timer.name!r} of state {self.state} returned {seconds!r}: "
                    f"expected seconds, a finite number >= 0"
                )
            deadline = self._now + float(seconds)
            self.timers[timer.name] = deadline
            self._effects.append(ScheduleTimer(timer.name, deadline))

    # -- Machine hooks (they only record) ------------------------------------------------

    def _on_exit(self, event_data: Any) -> None:
        for task in self.machine.states[self.state].tasks:
            self._effects.append(CancelTask(task, self.generation))
        for name in self.timers:
            self._effects.append(CancelTimer(name))
        self.timers.clear()

    def _on_enter(self, event_data: Any) -> None:
        self._entered = True  # tasks and timers once the entry and after actions ran

    def _on_transition(self, event_data: Any) -> None:
        if self._entered:
            self._entered = False
            self._enter()
        transition = event_data.transition
        self._effects.append(
            Emit(
                TransitionRecord(
                    at=self._now,
                    source=transition.source,
                    dest=transition.dest or transition.source,  # an internal row has no dest
                    trigger=event_data.event.name,
                    reason=_reason(event_data.kwargs),
                )
            )
        )


class _Step:
    """One input being handled: collects its effects; refuses re-entry."""

    __slots__ = ("effects", "now", "run")

    def __init__(self, run: SpecRun, now: float) -> None:
        self.run = run
        self.now = now
        self.effects: list[Effect] = []

    def __enter__(self) -> list[Effect]:
        run = self.run
        run._dispatching = True
        run._now = self.now
        run._effects = self.effects
        return self.effects

    def __exit__(self, *exc: object) -> None:
        run = self.run
        run._dispatching = False
        run._entered = False
        run._effects = []


def _is_seconds(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _reason(data: Mapping[str, Any]) -> str:
    """The event data as a short reason: ``amount=5``."""
    return ", ".join(f"{key}={value!r}" for key, value in data.items())[:200]
