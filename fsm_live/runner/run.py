"""A run of a user's spec, sans-I/O: the core's run, entered from its initial state.

:class:`UserRun` is :class:`fsm_live.core.run.SpecRun` (state, timers as
deadlines, task start and cancel effects with generations, guards, actions and
timers called with the user's object; inputs carry ``now``) plus what running a
user's own spec asks of it:

* :meth:`UserRun.start` enters the initial state like any other: its tasks
  start, its timers are armed and its entry actions run;
* :meth:`UserRun.report` is a task's trigger: dropped when the task is stale
  (rule 4) or its state refuses the trigger;
* :meth:`UserRun.expire` expires one named timer (tests pick one of several
  due at once);
* a timer's length must be seconds, a finite number not below zero, and a
  trigger fired from inside a guard or action of the run is refused (fire from
  a task: rule 1), each a :class:`~fsm_live.errors.UsageError` naming it.

:func:`run_machine` is the one :class:`RunMachine` of a spec and registry: its
every name must be bound (a packaged lifecycle name, ``backoff`` or ``dial``,
is the user's here like any other).
"""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace
from typing import Any, Final

from fsm_live.core.effects import Effect
from fsm_live.core.machine import SpecMachine
from fsm_live.core.run import SpecRun
from fsm_live.errors import SpecError, TransitionRefused, UsageError
from fsm_live.spec import Registry, Spec

__all__ = ("RunMachine", "UserRun", "run_machine")


class RunMachine(SpecMachine):
    """A :class:`SpecMachine` whose every name is bound by ``registry``.  Build it
    with :func:`run_machine` (one per spec and registry).

    Raises :class:`~fsm_live.errors.SpecError` (``FILE:LINE: item: message``) when a
    guard, action, timer or task the spec uses is not bound, or bound to a callable
    that cannot take its call.
    """

    __slots__ = ()

    def __init__(self, spec: Spec, registry: Registry) -> None:
        problems = registry.check(spec, unused=False)
        if problems:
            raise SpecError(problems)
        super().__init__(spec, registry=registry)


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


class UserRun(SpecRun):
    """One run of a spec on ``subject`` (the user's object).  Start it with
    :meth:`start` before anything else.  Not thread-safe: one driver feeds it."""

    __slots__ = ("_busy", "started")

    def __init__(self, machine: SpecMachine, subject: Any, *, now: float = 0.0) -> None:
        super().__init__(machine, subject=subject, now=now)
        self.started = False
        self._busy = False

    # -- inputs ------------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Enter the initial state at ``now``: start its tasks, arm its timers, run its
        entry actions; the effects.  Raises :class:`UsageError` if already started."""
        if self.started:
            raise UsageError(f"{self!r} is already started")
        self.started = True
        registry = self.machine.registry
        state = self.state_spec

        def enter() -> None:
            self._on_enter(SimpleNamespace(kwargs={"now": now}))
            for name in state.on_enter:
                declaration = self.machine.spec.known.get("action", name)
                args = dict.fromkeys(declaration.args if declaration else ())
                assert registry is not None  # a RunMachine binds every name
                registry.lookup("action", name)(self.subject, **args)

        return self._step(lambda: self._collect(enter))

    def fire(self, trigger: str, now: float, *, reason: str = "", **data: Any) -> list[Effect]:
        """Fire ``trigger`` at ``now`` with event ``data`` (see the core's
        :meth:`~fsm_live.core.run.SpecRun.fire`); also raises :class:`UsageError`
        before :meth:`start` and from inside a guard or action of this run."""
        if not self.started:
            raise UsageError(f"fire({trigger!r}) before start()")
        return self._step(lambda: super(UserRun, self).fire(trigger, now, reason=reason, **data))

    def handle_timer(self, now: float) -> list[Effect]:
        """Expire every timer due at ``now`` (earliest first); the effects."""
        return self._step(lambda: super(UserRun, self).handle_timer(now))

    def report(self, generation: int, trigger: str, now: float, **data: Any) -> list[Effect]:
        """A task of ``generation`` fires ``trigger``: dropped (no effects) if the
        task is stale (its state was left since) or the state refuses it."""
        if not self.is_current(generation):
            return []
        try:
            return self.fire(trigger, now, reason="reported by a task", **data)
        except TransitionRefused:
            return []

    def expire(self, name: str, now: float) -> list[Effect]:
        """Expire the armed timer ``name`` at ``now``, due or not (what
        :meth:`handle_timer` does at its deadline).  Raises ``KeyError`` if it is
        not armed."""
        del self.timers[name]
        return self._step(lambda: self._collect(self.timer_expired, name, now))

    # -- hooks -------------------------------------------------------------------------

    def timer_duration(self, name: str, now: float) -> float:
        """The registry's ``timer(subject)``; :class:`UsageError` unless it is seconds,
        a finite number >= 0."""
        registry = self.machine.registry
        if registry is None or ("timer", name) not in registry:
            return super().timer_duration(name, now)  # its SpecError names it
        seconds = registry.lookup("timer", name)(self.subject)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise UsageError(
                f"timer {name!r} of state {self.state} returned {seconds!r}: expected "
                f"seconds, a finite number >= 0"
            )
        return float(seconds)

    # -- internals ---------------------------------------------------------------------

    def _step(self, step: Any) -> list[Effect]:
        if self._busy:
            raise UsageError(
                f"{self!r}: a trigger fired from inside a guard or action; fire it from "
                f"a task (its report reaches the run after this step)"
            )
        self._busy = True
        try:
            effects: list[Effect] = step()
        finally:
            self._busy = False
        return effects
