"""One connection's lifecycle: its state, its counters, and the policies.

A :class:`Lifecycle` is a model of the shared :class:`SpecMachine`.  It is
sans-I/O: :meth:`Lifecycle.handle` takes an event stamped with ``now`` and
returns the effects the runner must execute; :meth:`Lifecycle.next_deadline`
says when to call it again with a :class:`~fsm_live.core.events.Tick`.

The policies it owns (docs/lifecycle.md describes them for users):

* **timers** a state declares in the spec are armed on entry and disarmed on exit:
  ``open_timeout`` (CONNECTING), ``heartbeat_timeout`` (moved by every inbound
  frame), ``stability`` and ``backoff``;
* **failure counting**: by the error class's action; ``planned`` closes count only
  while the connection was not yet stable;
* **stability**: the failure count resets only once a connection stayed up for
  ``stability_window`` or got its first heartbeat ack, so a server that accepts
  and closes at once sees growing gaps;
* **backoff**: the config's policy, Retry-After honoured and capped, a class's
  ``min_delay``, zero when exhausted (so ``give_up`` follows at once);
* **auth**: one credential refresh and one immediate retry, then ``fatal``;
* **escalation**: its success fires ``reset`` (failure count cleared);
* **failed retry**: a failed state reached by retryable failures (``give_up``)
  leaves by itself after ``failed_retry_delay`` (jittered) once its escalation,
  if any, did not recover (the ``retryable`` guard and the ``failed_retry``
  timer); one reached by a terminal failure (``fatal``) waits for ``Reset``;
* **proof**: a heartbeat ack or an application message ends the stability window;
* **backpressure**: while the application is behind and the client stopped
  reading (``ReadingPaused``), the heartbeat timeout is suspended: our own
  silence is not the peer's.

The trigger vocabulary the event mapping uses is :data:`REQUIRED_TRIGGERS`;
specs for real connections must provide it (checked at construction).
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from typing import Any, Final

from fsm_live.core.classify import Classifier, Failure
from fsm_live.core.effects import (
    CancelTask,
    CancelTimer,
    Effect,
    Emit,
    ScheduleTimer,
    StartTask,
    TransitionRecord,
)
from fsm_live.core.events import (
    Close,
    EscalationFinished,
    Event,
    HeartbeatAcked,
    Inbound,
    LinkFailed,
    MessageReceived,
    Opened,
    ReadingPaused,
    ReadingResumed,
    Reset,
    Rotate,
    Start,
    Tick,
    TriggerFired,
)
from fsm_live.core.machine import SpecMachine
from fsm_live.core.pacing import ReconnectPacer
from fsm_live.core.settings import LifecycleSettings
from fsm_live.errors import SpecError, TransitionRefused
from fsm_live.spec import Registry, Spec

__all__ = (
    "FAILURE_TRIGGERS",
    "LIFECYCLE_REGISTRY",
    "REQUIRED_TRIGGERS",
    "Lifecycle",
    "LifecycleMachine",
)

#: Triggers that carry a recoverable failure, tried in this order from the current state.
FAILURE_TRIGGERS: Final = ("connect_failed", "lost")
#: Triggers the event mapping of :meth:`Lifecycle.handle` fires.
REQUIRED_TRIGGERS: Final = frozenset(
    {"start", "opened", "connect_failed", "lost", "rotate", "fatal", "reset", "close"}
)
#: The failure kind a timer's expiry reports.
_TIMER_KINDS: Final = {"open_timeout": "timeout", "heartbeat_timeout": "heartbeat_timeout"}
_TIMER_REASONS: Final = {
    "open_timeout": "open timeout",
    "heartbeat_timeout": "nothing received within the heartbeat timeout",
}


class LifecycleMachine(SpecMachine):
    """A :class:`SpecMachine` plus the spec's error table, ready to drive lifecycles.

    Build one per spec and share it; each :class:`Lifecycle` refers to it.  Its
    guards are those of :data:`LIFECYCLE_REGISTRY`, plus ``registry``'s (which
    win where both bind a name); tasks the spec declares itself must be bound in
    ``registry`` (the runtime runs them as ``async func(context)``).  Raises
    :class:`~fsm_live.errors.SpecError` listing what is not bound.
    """

    __slots__ = ("classifier", "failure_trigger")

    def __init__(
        self, spec: Spec, *, require_triggers: bool = True, registry: Registry | None = None
    ) -> None:
        if require_triggers:
            missing = REQUIRED_TRIGGERS - set(spec.triggers)
            if missing:
                raise SpecError(
                    [
                        f"{spec.source}: triggers: a connection spec needs the "
                        f"triggers {', '.join(sorted(missing))}"
                    ]
                )
        registry = LIFECYCLE_REGISTRY if registry is None else LIFECYCLE_REGISTRY | registry
        # Tasks of the spec's own run as the registry's coroutines (the runtime starts
        # the packaged ones itself): each must be bound.
        problems = registry.check(spec, kinds=("task", "timer"), declared_only=True)
        if problems:
            raise SpecError(problems)
        super().__init__(spec, registry=registry)
        self.classifier = Classifier(spec.errors)
        self.failure_trigger: dict[str, str | None] = {
            name: next((t for t in FAILURE_TRIGGERS if t in allowed), None)
            for name, allowed in self.allowed.items()
        }


class Lifecycle:
    """The state and policies of one connection.  Not thread-safe: one driver feeds it.

    ``random`` (floats in [0, 1)) is the jitter source; inject a seeded one in
    tests.  ``can_refresh_credentials`` says whether an auth failure may be
    answered with one refresh and retry (a connection without a credentials
    provider goes FAILED at once).  ``pacer``, shared with other connections,
    may move each backoff deadline later to bound their attempts per second.
    """

    __slots__ = (
        "_auth_refreshed",
        "_effects",
        "_escalation_pending",
        "_reading_since",
        "can_refresh_credentials",
        "config",
        "entered_at",
        "escalations",
        "failures",
        "generation",
        "last_failure",
        "last_inbound",
        "machine",
        "pacer",
        "random",
        "reading_paused",
        "refresh_credentials_first",
        "stable",
        "state",
        "terminal",
        "timers",
    )

    def __init__(
        self,
        machine: LifecycleMachine,
        config: LifecycleSettings,
        *,
        random: Callable[[], float] | None = None,
        can_refresh_credentials: bool = False,
        pacer: ReconnectPacer | None = None,
        now: float = 0.0,
    ) -> None:
        self.machine = machine
        self.config = config
        self.pacer = pacer
        self.random = random or _random.random
        self.can_refresh_credentials = can_refresh_credentials
        self.state: str = machine.spec.initial
        #: Incremented on every state entry; tasks and their events carry it.
        self.generation = 0
        #: Failures counted since the last stable connection (or reset).
        self.failures = 0
        self.stable = False
        self.escalations = 0
        self.last_failure: Failure | None = None
        self.entered_at = now
        self.last_inbound = now
        #: Set after an auth failure: the next dial refreshes credentials first.
        self.refresh_credentials_first = False
        self._auth_refreshed = False
        #: True in a failed state entered by a terminal failure (``fatal``).
        self.terminal = False
        #: True while the application is behind and the client does not read.
        self.reading_paused = False
        #: When the client last started reading again: silence counts from then at most.
        self._reading_since = now
        self._escalation_pending = False
        #: Armed timers of the current state: name -> deadline.
        self.timers: dict[str, float] = {}
        self._effects: list[Effect] = []

    def __repr__(self) -> str:
        return f"<Lifecycle {self.state} generation={self.generation} failures={self.failures}>"

    # -- queries -----------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """True when the failure count has reached ``config.max_failures`` (a spec guard)."""
        return self.failures >= self.config.max_failures

    @property
    def may_escalate(self) -> bool:
        """True while escalations since the last stable connection are below the limit."""
        return self.escalations < self.config.max_escalations

    @property
    def awaits_proof(self) -> bool:
        """True while a :class:`HeartbeatAcked` or :class:`MessageReceived` would end
        the stability window.

        Otherwise they only move the last-inbound time, which an ``Inbound``
        (or the driver's ``note_inbound``) does as well.
        """
        return "stability" in self.timers

    @property
    def retryable(self) -> bool:
        """The ``retryable`` guard: this failed state was reached by retryable
        failures (not a terminal one), ``config.failed_retry`` is on, and no
        escalation is running."""
        return self.config.failed_retry and not self.terminal and not self._escalation_pending

    @property
    def needs_reset(self) -> bool:
        """True in a failed state that the connection will not leave by itself:
        after a terminal failure (or with ``failed_retry`` off), once its
        escalation, if any, did not recover.  Only :class:`Reset` (or ``Close``)
        leaves it then."""
        if not self.machine.states[self.state].failed or self._escalation_pending:
            return False
        return not (self.retryable and "failed_retry" in self.timers)

    @property
    def is_final(self) -> bool:
        """True in a final (absorbing) state."""
        return self.machine.states[self.state].final

    def next_deadline(self) -> float | None:
        """The earliest armed timer's deadline, or None: call ``handle(Tick(now))`` then.

        A suspended timer (the heartbeat timeout while reading is paused) has no deadline.
        """
        deadline = min(self.timers.values(), default=math.inf)
        return None if deadline == math.inf else deadline

    def backoff_bounds(self, failure: Failure | None = None) -> tuple[float, float]:
        """The interval a backoff delay falls in, given the last failure and the count."""
        failure = failure or self.last_failure
        if self.exhausted:
            return 0.0, 0.0
        error_class = failure.error_class if failure else self.machine.classifier.default
        policy = self.machine.classifier.policy(error_class)
        if policy.action == "refresh":
            return 0.0, 0.0
        if policy.action == "planned" and self.stable:
            return 0.0, self.config.planned_reconnect_delay
        low, high = self.config.backoff.bounds(self.failures, error_class)
        at_least = policy.min_delay
        if policy.retry_after and failure and failure.retry_after is not None:
            at_least = max(at_least, min(failure.retry_after, self.config.retry_after_cap))
        return max(low, at_least), max(high, at_least)

    # -- inputs ------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Effect]:
        """Apply one event; return the effects to execute, in order.

        Events from a task whose generation is stale are dropped (no effects).
        Raises :class:`TransitionRefused` for an application event the state does
        not allow (``Start`` twice, ``Rotate`` while not connected, ``Reset`` while
        not failed); ``Close`` in a final state is a no-op.
        """
        if isinstance(event, Inbound):  # the most frequent event: first
            if event.generation == self.generation:
                self._note_inbound(event.now)
            return []
        if isinstance(event, Tick):
            return self._on_tick(event.now)
        if isinstance(event, Start):
            return self.fire("start", event.now, reason="started")
        if isinstance(event, Close):
            if self.is_final:
                return []
            return self.fire("close", event.now, reason=event.reason)
        if isinstance(event, Reset):
            return self.fire("reset", event.now, reason=event.reason)
        if event.generation != self.generation:
            return []
        if isinstance(event, HeartbeatAcked | MessageReceived):
            self._note_inbound(event.now)
            if self.timers.pop("stability", None) is not None:
                self._become_stable()
            return []
        if isinstance(event, ReadingPaused | ReadingResumed):
            self._set_reading_paused(isinstance(event, ReadingPaused), event.now)
            return []
        if isinstance(event, Opened):
            self.refresh_credentials_first = False
            return self.fire("opened", event.now, reason="opened")
        if isinstance(event, LinkFailed):
            return self._on_failure(event.now, event.failure)
        if isinstance(event, Rotate):
            return self.fire("rotate", event.now, reason=event.reason)
        if isinstance(event, TriggerFired):
            return self.fire(event.trigger, event.now, reason=event.reason or event.trigger)
        return self._on_escalation(event)

    def fire(
        self, trigger: str, now: float, *, failure: Failure | None = None, reason: str = ""
    ) -> list[Effect]:
        """Fire ``trigger`` at ``now`` (the one typed way in); return the effects.

        A ``failure`` is counted first (by its class's action), so guards such as
        ``exhausted`` see it.  Returns no effects when guards refused every
        transition, and then the failure is not counted either: a refused trigger
        changes nothing.  Raises :class:`TransitionRefused` if the current state
        has no transition for ``trigger``.
        """
        effects: list[Effect] = []
        self._effects = effects
        try:
            self._fire(trigger, now, failure, reason)
        finally:
            self._effects = []
        return effects

    # -- internals ---------------------------------------------------------------------

    def _fire(self, trigger: str, now: float, failure: Failure | None, reason: str) -> bool:
        if trigger not in self.machine.allowed[self.state]:
            raise TransitionRefused(self.state, trigger)
        counted = self.failures, self.last_failure
        if failure is not None:
            self._count_failure(failure)
        taken = self.machine.fire(
            self,
            trigger,
            now=now,
            failure=failure,
            reason=reason or (str(failure) if failure else ""),
        )
        if not taken:
            self.failures, self.last_failure = counted
        return taken

    def _count_failure(self, failure: Failure) -> None:
        self.last_failure = failure
        action = self.machine.classifier.policy(failure.error_class).action
        if action == "retry" or (action == "planned" and not self.stable):
            self.failures += 1

    def _on_failure(self, now: float, failure: Failure) -> list[Effect]:
        action = self.machine.classifier.policy(failure.error_class).action
        refresh = action == "refresh" and self.can_refresh_credentials and not self._auth_refreshed
        if action == "fail" or (action == "refresh" and not refresh):
            trigger: str | None = "fatal"
        else:
            trigger = self.machine.failure_trigger[self.state]
        if trigger is None or trigger not in self.machine.allowed[self.state]:
            raise TransitionRefused(self.state, trigger or FAILURE_TRIGGERS[0])
        self.refresh_credentials_first = refresh
        self._auth_refreshed = self._auth_refreshed or refresh
        self.terminal = trigger == "fatal"
        return self.fire(trigger, now, failure=failure)

    def _on_escalation(self, event: EscalationFinished) -> list[Effect]:
        self.escalations += 1
        self._escalation_pending = False
        if event.ok:
            return self.fire("reset", event.now, reason=event.reason or "escalation succeeded")
        if "failed_retry" in self.machine.timers[self.state] and "failed_retry" not in self.timers:
            # Its timer expired while the escalation ran, and waited for it: retry now.
            return self._collect(self._expire, "failed_retry", event.now)
        return []

    def _on_tick(self, now: float) -> list[Effect]:
        return self._collect(self._expire_due, now)

    def _collect(self, step: Callable[..., None], *args: Any) -> list[Effect]:
        """Run ``step(*args)``, returning the effects the Machine's callbacks record."""
        effects: list[Effect] = []
        self._effects = effects
        try:
            step(*args)
        finally:
            self._effects = []
        return effects

    def _expire_due(self, now: float) -> None:
        while self.timers:
            name, deadline = min(self.timers.items(), key=lambda item: item[1])
            if deadline > now:
                break
            del self.timers[name]
            self._expire(name, now)

    def _expire(self, name: str, now: float) -> None:
        if name == "stability":
            self._become_stable()
            return
        kind = _TIMER_KINDS.get(name)
        failure = None
        if kind is not None:
            failure = self.machine.classifier.classify(kind=kind, reason=_TIMER_REASONS[name])
            reason = ""
        elif name == "failed_retry":
            reason = "failed_retry_delay elapsed: retrying with the failure count reset"
        elif name != "backoff":
            reason = f"{name} elapsed"
        elif self.exhausted:
            reason = f"{self.failures} failures in a row (max_failures {self.config.max_failures})"
        elif self.refresh_credentials_first:
            reason = "retry after a credential refresh"
        else:
            reason = "backoff elapsed"
        for trigger in self.machine.timers[self.state][name].triggers:
            if self._fire(trigger, now, failure, reason):
                return
            failure = None  # counted once, whichever trigger takes it

    def _note_inbound(self, now: float) -> None:
        if now > self.last_inbound:
            self.last_inbound = now
        if "heartbeat_timeout" in self.timers:
            self._move_heartbeat_timeout()

    def _move_heartbeat_timeout(self) -> None:
        """Lost after ``heartbeat_timeout`` of silence, counted from the last inbound
        frame or from when the client last started reading, whichever is later;
        never while reading is paused (that silence is ours)."""
        self.timers["heartbeat_timeout"] = (
            math.inf
            if self.reading_paused
            else (max(self.last_inbound, self._reading_since) + self.config.heartbeat_timeout)
        )

    def _set_reading_paused(self, paused: bool, now: float) -> None:
        """Suspend the heartbeat timeout while paused; on resume it counts from ``now``."""
        if paused == self.reading_paused:
            return
        self.reading_paused = paused
        if not paused:
            self._reading_since = now
        if "heartbeat_timeout" in self.timers:
            self._move_heartbeat_timeout()

    def _become_stable(self) -> None:
        self.stable = True
        self.failures = 0
        self.escalations = 0

    def _arm(self, name: str, now: float) -> float:
        config = self.config
        if name == "open_timeout":
            return now + config.open_timeout
        if name == "heartbeat_timeout":
            self.last_inbound = now
            return now + config.heartbeat_timeout
        if name == "stability":
            self.stable = False
            return now + config.stability_window
        if name == "failed_retry":  # jittered, so a fleet that failed together spreads out
            return now + config.failed_retry_after * (0.5 + 0.5 * self.random())
        if name != "backoff":  # a timer of the spec's own: its registry says how long
            registry = self.machine.registry
            assert registry is not None  # LifecycleMachine always has one
            return now + float(registry.lookup("timer", name)(self))
        # The backoff timer.
        low, high = self.backoff_bounds()
        if self.exhausted:
            return now + low  # give up now: not an attempt, nothing to pace
        deadline = now + self._backoff_delay(low, high)
        return deadline if self.pacer is None else self.pacer.reserve(deadline, now)

    def _backoff_delay(self, low: float, high: float) -> float:
        if low == high:
            return low
        failure = self.last_failure
        error_class = failure.error_class if failure else self.machine.classifier.default
        policy = self.machine.classifier.policy(error_class)
        if policy.action == "planned" and self.stable:
            return high * self.random()
        return max(
            low, min(high, self.config.backoff.delay(self.failures, error_class, self.random))
        )

    # -- Machine callbacks (they only record effects) ----------------------------------

    def _on_exit(self, event_data: Any) -> None:
        effects = self._effects
        generation = self.generation
        for task in self.machine.states[self.state].tasks:
            effects.append(CancelTask(task, generation))
        for name in self.timers:
            effects.append(CancelTimer(name))
        self.timers.clear()

    def _on_enter(self, event_data: Any) -> None:
        effects = self._effects
        now: float = event_data.kwargs["now"]
        self.generation += 1
        self.entered_at = now
        state = self.machine.states[self.state]
        if state.success:
            self._auth_refreshed = False
        if not state.failed:
            self.terminal = False
        self.reading_paused = False
        self._reading_since = now
        self._escalation_pending = "escalation" in state.tasks
        refresh, escalate = self.refresh_credentials_first, self.may_escalate
        for task in state.tasks:
            effects.append(
                StartTask(task, self.generation, refresh_credentials=refresh, may_escalate=escalate)
            )
        for timer in state.timers:
            deadline = self._arm(timer.name, now)
            self.timers[timer.name] = deadline
            effects.append(ScheduleTimer(timer.name, deadline))

    def _on_transition(self, event_data: Any) -> None:
        failure: Failure | None = event_data.kwargs["failure"]
        transition = event_data.transition
        self._effects.append(
            Emit(
                TransitionRecord(
                    at=event_data.kwargs["now"],
                    source=transition.source,
                    dest=transition.dest or transition.source,  # an internal row has no dest
                    trigger=event_data.event.name,
                    reason=event_data.kwargs["reason"],
                    error_class=failure.error_class if failure else None,
                )
            )
        )

    def _on_reset_failures(self, event_data: Any) -> None:
        self.failures = 0
        self.stable = False


# -- the packaged lifecycle's guards, bound like any spec's ----------------------------------


def _exhausted(lifecycle: Lifecycle) -> bool:
    """The ``exhausted`` guard (see :attr:`Lifecycle.exhausted`)."""
    return lifecycle.exhausted


def _retryable(lifecycle: Lifecycle) -> bool:
    """The ``retryable`` guard (see :attr:`Lifecycle.retryable`)."""
    return lifecycle.retryable


#: The guards of the packaged lifecycle, bound as a user's are (``func(lifecycle)``);
#: every :class:`LifecycleMachine` uses them.  Its tasks are started by the runtime's
#: engine from a table keyed by task name (``TASK_STARTS``) and its timers armed by
#: :meth:`Lifecycle._arm`; the tests hold both to the names of
#: :data:`~fsm_live.spec.LIFECYCLE_VOCABULARY`.
LIFECYCLE_REGISTRY: Final = Registry("lifecycle")
LIFECYCLE_REGISTRY.bind("guard", "exhausted", _exhausted)
LIFECYCLE_REGISTRY.bind("guard", "retryable", _retryable)
