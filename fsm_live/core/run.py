"""One run of a spec on a subject, sans-I/O: its state, its timers, its tasks.

A :class:`SpecRun` is a model of a shared :class:`~fsm_live.core.machine.SpecMachine`
(one Machine per spec and registry, any number of runs: docs/architecture.md,
rule 5).  It never sleeps and never starts anything itself: inputs carry ``now``
(monotonic seconds), outputs are effects (:mod:`fsm_live.core.effects`) and one
deadline, as aioquic's ``get_timer()`` / ``handle_timer(now)``:

* :meth:`SpecRun.fire` fires a trigger with event data (guards and actions get
  the run's ``subject`` and the data by name);
* :meth:`SpecRun.handle_timer` expires the timers due at ``now``: each fires
  the first of its triggers the machine accepts;
* :meth:`SpecRun.next_deadline` says when to call it next.

On entering a state its tasks start (``StartTask``, tagged with the run's new
``generation``) and its timers are armed (their durations from the registry's
``timer`` bindings, ``func(subject) -> seconds``); on leaving it they are
cancelled (``CancelTask``; the driver cancels and joins the task).  A report of
a task whose generation is not the current one is stale (rule 4): drivers drop
it (:meth:`SpecRun.is_current`).  Every transition taken is an ``Emit`` of its
:class:`~fsm_live.core.effects.TransitionRecord`.

The connection's :class:`~fsm_live.core.lifecycle.Lifecycle` is a subclass: its
built-in timers' durations and expiries are policies (backoff, heartbeat
silence ...), through the hooks :meth:`SpecRun.timer_duration` and
:meth:`SpecRun.timer_expired`.
"""

from __future__ import annotations

import math
from typing import Any

from fsm_live.core.effects import (
    CancelTask,
    CancelTimer,
    Effect,
    Emit,
    ScheduleTimer,
    StartTask,
    TransitionRecord,
)
from fsm_live.core.machine import SpecMachine, SubjectModel
from fsm_live.errors import SpecError, TransitionRefused
from fsm_live.spec import StateSpec

__all__ = ("SpecRun",)


class SpecRun(SubjectModel):
    """The state of one run of ``machine``'s spec.  Not thread-safe: one driver feeds it.

    ``subject`` is what the spec's guards, actions and timers are called with
    (default: the run itself).  ``now`` is the clock's reading at creation.
    """

    __slots__ = ("_effects", "entered_at", "generation", "machine", "state", "subject", "timers")

    def __init__(self, machine: SpecMachine, *, subject: Any = None, now: float = 0.0) -> None:
        self.machine = machine
        self.subject: Any = self if subject is None else subject
        self.state: str = machine.spec.initial
        #: Incremented on every state entry; tasks and their reports carry it.
        self.generation = 0
        self.entered_at = now
        #: Armed timers of the current state: name -> deadline (``math.inf``: suspended).
        self.timers: dict[str, float] = {}
        self._effects: list[Effect] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state} generation={self.generation}>"

    # -- queries -----------------------------------------------------------------------

    @property
    def state_spec(self) -> StateSpec:
        """The current state's declaration (its roles, tasks, timers)."""
        return self.machine.states[self.state]

    @property
    def is_final(self) -> bool:
        """True in a final (absorbing) state."""
        return self.machine.states[self.state].final

    def is_current(self, generation: int) -> bool:
        """True if a task started with ``generation`` belongs to the current state entry."""
        return generation == self.generation

    def allows(self, trigger: str) -> bool:
        """True if the current state has a row for ``trigger`` (its guards may still fail)."""
        return trigger in self.machine.allowed[self.state]

    def next_deadline(self) -> float | None:
        """The earliest armed timer's deadline, or None: call :meth:`handle_timer` then."""
        deadline = min(self.timers.values(), default=math.inf)
        return None if deadline == math.inf else deadline

    # -- inputs ------------------------------------------------------------------------

    def fire(self, trigger: str, now: float, *, reason: str = "", **data: Any) -> list[Effect]:
        """Fire ``trigger`` at ``now`` with event ``data``; return the effects, in order.

        No effects when the trigger is ignored here or every row's guards failed.
        Raises :class:`~fsm_live.errors.TransitionRefused` if the current state
        has no row for ``trigger``.
        """
        return self._collect(self._fire, trigger, now, reason, data)

    def handle_timer(self, now: float) -> list[Effect]:
        """Expire every timer due at ``now`` (earliest first); return the effects."""
        return self._collect(self._expire_due, now)

    # -- hooks for subclasses ------------------------------------------------------------

    def timer_duration(self, name: str, now: float) -> float:
        """Seconds until timer ``name`` expires, asked on entering its state: the
        registry's ``timer`` binding called with the subject.  Raises
        :class:`~fsm_live.errors.SpecError` if nothing binds it."""
        registry = self.machine.registry
        if registry is None or ("timer", name) not in registry:
            raise SpecError([f"{self.machine.spec.source}: timer {name!r} is bound to nothing"])
        return float(registry.lookup("timer", name)(self.subject))

    def timer_expired(self, name: str, now: float) -> None:
        """Timer ``name`` expired: fire the first of its triggers the machine takes."""
        for trigger in self.machine.timers[self.state][name].triggers:
            if self._fire(trigger, now, f"{name} elapsed", {}):
                return

    def entering(self, state: StateSpec, now: float) -> None:
        """Called on entering ``state``, after ``generation`` moved and before its
        tasks start and its timers are armed."""

    def leaving(self, state: StateSpec, now: float) -> None:
        """Called on leaving ``state``, before its tasks are cancelled."""

    # -- internals ---------------------------------------------------------------------

    def _collect(self, step: Any, *args: Any) -> list[Effect]:
        """Run ``step(*args)``; return the effects the Machine's callbacks recorded."""
        effects: list[Effect] = []
        self._effects = effects
        try:
            step(*args)
        finally:
            self._effects = []
        return effects

    def _fire(self, trigger: str, now: float, reason: str, data: dict[str, Any]) -> bool:
        if trigger not in self.machine.allowed[self.state]:
            raise TransitionRefused(self.state, trigger)
        return self.machine.fire(self, trigger, now=now, reason=reason, **data)

    def _expire_due(self, now: float) -> None:
        timers = self.timers
        while timers:
            name, deadline = min(timers.items(), key=lambda item: item[1])
            if deadline > now:
                break
            del timers[name]
            self.timer_expired(name, now)

    # -- Machine callbacks (they only record effects) ----------------------------------

    def _on_exit(self, event_data: Any) -> None:
        state = self.machine.states[self.state]
        self.leaving(state, event_data.kwargs["now"])
        effects = self._effects
        generation = self.generation
        for task in state.tasks:
            effects.append(CancelTask(task, generation))
        for name in self.timers:
            effects.append(CancelTimer(name))
        self.timers.clear()

    def _on_enter(self, event_data: Any) -> None:
        now: float = event_data.kwargs["now"]
        self.generation += 1
        self.entered_at = now
        state = self.machine.states[self.state]
        self.entering(state, now)
        effects = self._effects
        for task in state.tasks:
            effects.append(self._start(task))
        for timer in state.timers:
            deadline = now + self.timer_duration(timer.name, now)
            self.timers[timer.name] = deadline
            effects.append(ScheduleTimer(timer.name, deadline))

    def _start(self, task: str) -> StartTask:
        """The effect that starts ``task`` in the state just entered."""
        return StartTask(task, self.generation)

    def _on_transition(self, event_data: Any) -> None:
        kwargs = event_data.kwargs
        failure = kwargs.get("failure")
        transition = event_data.transition
        self._effects.append(
            Emit(
                TransitionRecord(
                    at=kwargs["now"],
                    source=transition.source,
                    dest=transition.dest or transition.source,  # an internal row has no dest
                    trigger=event_data.event.name,
                    reason=kwargs.get("reason", ""),
                    error_class=failure.error_class if failure is not None else None,
                )
            )
        )

    def _on_reset_failures(self, event_data: Any) -> None:
        """A row with ``reset_failures: true`` was taken (the lifecycle counts failures)."""
