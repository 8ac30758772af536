"""Property-based tests of a spec's transitions, for this project and for yours.

:func:`spec_state_machine` turns any valid spec into a Hypothesis
``RuleBasedStateMachine`` that drives a :class:`~fsm_live.core.lifecycle.Lifecycle`
with random triggers, failures and clock jumps (and, for connection specs, the
domain events of :mod:`fsm_live.core.events`, stale generations included), and
checks after every step:

* the state is always one of the spec's states;
* every transition taken is an edge of the spec, and chained transitions connect;
* refused triggers are exactly those the state has no transition for, and change nothing;
* the set of running tasks (replayed from the effects) equals the spec's tasks
  for the current state, all of the current generation; every cancel names a
  running task;
* armed timers are the current state's timers; ``next_deadline()`` is the earliest
  of every deadline the lifecycle keeps (``deadlines()``);
* final states absorb: nothing leaves them and no effect comes out of them but
  the abort of a link released on the way in;
* a link is released once, aborted only after its release and only if not closed;
  a heartbeat goes out only in a state whose tasks include ``heartbeat``;
* backoff delays stay within the policy's bounds (widened only by Retry-After,
  a class's ``min_delay`` and the planned-close jitter; zero once exhausted);
* the failure count goes down only to zero, and only when the connection became
  stable (its stability timer expired, or a heartbeat ack) or a transition that
  declares ``reset_failures`` was taken.

Use it in a test module::

    from fsm_live.testing import spec_state_machine

    TestMySpec = spec_state_machine("specs/my_lifecycle.yaml").TestCase

That is for connection specs, run by fsm_live's lifecycle.  Your own machine,
run on your object with your registry, is checked by
:mod:`fsm_live.testing.run_properties`::

    TestOrders = spec_state_machine("order_control.yaml", registry=registry,
                                    subject=Order).TestCase
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from fsm_live.config import Config
from fsm_live.core.classify import Classifier, Failure
from fsm_live.core.effects import (
    AbortLink,
    CancelTask,
    Effect,
    Emit,
    ReleaseLink,
    ScheduleTimer,
    SendHeartbeat,
    StartTask,
)
from fsm_live.core.events import (
    Close,
    CredentialsRefreshed,
    EscalationFinished,
    Event,
    HeartbeatAcked,
    Inbound,
    LinkClosed,
    LinkFailed,
    MessageReceived,
    Opened,
    ReadingPaused,
    ReadingResumed,
    Rotate,
    Start,
    Tick,
)
from fsm_live.core.lifecycle import REQUIRED_TRIGGERS, Lifecycle, LifecycleMachine
from fsm_live.errors import TransitionRefused
from fsm_live.spec import FAILURE_KINDS, Registry, Spec

__all__ = ("LifecycleFactory", "failures", "spec_state_machine")

LifecycleFactory = Callable[..., Lifecycle]


def failures(spec: Spec) -> st.SearchStrategy[Failure]:
    """Failures built from the spec's own error table: every kind, status and close
    code it names (plus a few it does not), with and without Retry-After."""
    classifier = Classifier(spec.errors)
    statuses = sorted({s for rule in spec.errors.rules for s in rule.http_status})
    codes = sorted({c for rule in spec.errors.rules for c in rule.close_codes})
    retry_after = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)
    return st.one_of(
        st.builds(classifier.classify, kind=st.sampled_from(sorted(FAILURE_KINDS))),
        st.builds(
            classifier.classify,
            http_status=st.sampled_from(statuses or [500]) | st.integers(100, 599),
            retry_after=retry_after,
        ),
        st.builds(
            classifier.classify,
            close_code=st.sampled_from(codes or [1006]) | st.integers(1000, 4999),
        ),
    )


def spec_state_machine(
    spec: Spec | str | Path,
    *,
    registry: Registry | None = None,
    subject: Callable[[], Any] | None = None,
    args: Mapping[str, st.SearchStrategy[Any]] | None = None,
    config: Config | None = None,
    lifecycle_factory: LifecycleFactory = Lifecycle,
) -> type[RuleBasedStateMachine]:
    """A ``RuleBasedStateMachine`` class checking the spec's invariants.

    Your machine: give ``subject``, a function returning a new object of yours
    (``subject=Order``), and ``registry``, binding every guard, action, timer and
    task the spec uses (called with that object, as :class:`~fsm_live.runner.Runner`
    runs them).  The spec then runs on your object with your callables, and the
    invariants of :mod:`fsm_live.testing.run_properties` are checked; ``args``
    gives strategies for declared event arguments.  Raises
    :class:`~fsm_live.errors.SpecError` naming every name ``registry`` leaves
    unbound, and ``TypeError`` for a ``registry`` without ``subject`` on a spec
    that is not a connection's (its callables would get fsm_live's lifecycle).

    A connection spec (one with the triggers of
    :data:`~fsm_live.core.lifecycle.REQUIRED_TRIGGERS`), or any spec without
    ``subject`` and ``registry``: fsm_live's own lifecycle runs it (module
    docstring); ``registry`` then binds the tasks and timers the spec declares
    itself (as for ``LifecycleMachine``).  ``config`` defaults to one with short
    timers so clock jumps reach them.  ``lifecycle_factory`` builds the model
    under test (``Lifecycle`` or a subclass) with the same arguments as
    :class:`Lifecycle`; the project's own tests plant bugs through it to show the
    invariants catch them.

    Run it with ``.TestCase`` (pytest/unittest) or
    ``hypothesis.stateful.run_state_machine_as_test``.
    """
    spec = spec if isinstance(spec, Spec) else Spec.from_path(spec)
    if subject is not None or (
        registry is not None and not set(spec.triggers) >= REQUIRED_TRIGGERS
    ):
        if registry is None:
            registry = Registry(f"{spec.name} (nothing bound)")
        if subject is None:
            raise TypeError(
                f"spec_state_machine({spec.source}, registry={registry.name!r}): its guards, "
                f"actions and timers are called with your object: pass subject=, a function "
                f"returning a new one (e.g. subject=Order)"
            )
        from fsm_live.testing.run_properties import run_state_machine

        return run_state_machine(spec, registry, subject, args=args)
    return _build(
        spec,
        config
        or Config(
            heartbeat_interval=1,
            heartbeat_timeout=3,
            open_timeout=2,
            stability_window=4,
            max_failures=3,
            retry_after_cap=20,
        ),
        lifecycle_factory,
        registry,
    )


def _build(
    spec: Spec,
    config: Config,
    lifecycle_factory: LifecycleFactory,
    registry: Registry | None,
) -> type[RuleBasedStateMachine]:
    machine = LifecycleMachine(spec, require_triggers=False, registry=registry)
    drives_connections = set(spec.triggers) >= REQUIRED_TRIGGERS
    edges = {(source, t.trigger, t.dest) for source, t in spec.edges()}
    reset_edges = {(source, t.trigger, t.dest) for source, t in spec.edges() if t.reset_failures}
    failure_strategy = failures(spec)
    jumps = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=30, allow_nan=False))

    class SpecStateMachine(RuleBasedStateMachine):
        """Random triggers, failures and clock jumps against one lifecycle."""

        def __init__(self) -> None:
            super().__init__()
            self.now = 0.0
            self.lifecycle = lifecycle_factory(machine, config, now=0.0)
            self.running: dict[str, int] = {}
            self.released: set[int] = set()  # links released and not closed yet
            self.failures = 0

        @initialize(seed=st.integers(0, 2**32 - 1), can_refresh=st.booleans())
        def setup(self, seed: int, can_refresh: bool) -> None:
            self.lifecycle.random = random.Random(seed).random
            self.lifecycle.can_refresh_credentials = can_refresh

        # -- rules ---------------------------------------------------------------------

        # A spec without triggers (its one state final) has nothing to fire: the
        # rule is never run, and its strategy must still be valid.
        @precondition(lambda self: bool(spec.triggers))
        @rule(trigger=st.sampled_from(spec.triggers or ("",)), failure=st.none() | failure_strategy)
        def fire_trigger(self, trigger: str, failure: Failure | None) -> None:
            before = self.lifecycle.state
            try:
                effects = self.lifecycle.fire(trigger, self.now, failure=failure)
            except TransitionRefused:
                assert trigger not in machine.allowed[before], f"{trigger} refused in {before}"
                assert self.lifecycle.state == before
                return
            assert trigger in machine.allowed[before], f"{trigger} accepted in {before}"
            self.check_step(before, effects, allow_reset=False)

        @rule(dt=jumps)
        def advance_clock(self, dt: float) -> None:
            self.now += dt
            self.step(Tick(self.now))

        @precondition(lambda self: self.lifecycle.next_deadline() is not None)
        @rule()
        def jump_to_next_deadline(self) -> None:
            deadline = self.lifecycle.next_deadline()
            assert deadline is not None
            self.now = max(self.now, deadline)
            self.step(Tick(self.now))

        @precondition(lambda self: drives_connections)
        @rule(data=st.data(), stale=st.booleans())
        def domain_event(self, data: st.DataObject, stale: bool) -> None:
            generation = self.lifecycle.generation - (1 if stale else 0)
            now = self.now
            event: Event = data.draw(
                st.one_of(
                    st.just(Opened(now, generation)),
                    st.builds(LinkFailed, st.just(now), st.just(generation), failure_strategy),
                    st.just(Inbound(now, generation)),
                    st.just(HeartbeatAcked(now, generation, rtt=0.01)),
                    st.just(Rotate(now, generation)),
                    st.builds(EscalationFinished, st.just(now), st.just(generation), st.booleans()),
                    st.just(Start(now)),
                    st.just(Close(now)),
                    st.just(ReadingPaused(now, generation)),
                    st.just(ReadingResumed(now, generation)),
                    st.just(MessageReceived(now, generation)),
                    st.builds(
                        CredentialsRefreshed,
                        st.just(now),
                        st.just(generation),
                        st.sampled_from(("auth", "token", "cookies")),
                        st.booleans(),
                        st.booleans(),
                    ),
                    *(
                        [st.sampled_from(sorted(self.released)).map(lambda n: LinkClosed(now, n))]
                        if self.released
                        else []
                    ),
                )
            )
            if isinstance(event, LinkClosed):
                self.released.discard(event.link)
            self.step(event)

        # -- checks --------------------------------------------------------------------

        def step(self, event: Event) -> None:
            lifecycle = self.lifecycle
            before = lifecycle.state
            stale = getattr(event, "generation", lifecycle.generation) != lifecycle.generation
            # A refresh reports its outcome whatever state it ends in (its credential's
            # age moved), so a stale one may still act: only when it is current.
            stale = stale and not isinstance(event, CredentialsRefreshed)
            stability_due = (
                "stability" in lifecycle.timers
                and isinstance(event, Tick)
                and lifecycle.timers["stability"] <= event.now
            )
            acked = isinstance(event, HeartbeatAcked) and "stability" in lifecycle.timers
            try:
                effects = lifecycle.handle(event)
            except TransitionRefused:
                assert lifecycle.state == before
                return
            if stale:
                assert effects == [], f"stale {event} produced {effects}"
            self.check_step(before, effects, allow_reset=stability_due or acked)

        def check_step(self, before: str, effects: list[Effect], *, allow_reset: bool) -> None:
            lifecycle = self.lifecycle
            if machine.states[before].final:
                # Only the links released on the way in may still be closing (and aborted).
                assert all(isinstance(e, AbortLink) for e in effects), (
                    f"final state {before} produced {effects}"
                )
                assert lifecycle.state == before
            state = before
            for effect in effects:
                if isinstance(effect, Emit):
                    record = effect.record
                    edge = (record.source, record.trigger, record.dest)
                    assert edge in edges, f"{edge} is not an edge of the spec"
                    assert record.source == state, f"{edge} does not start at {state}"
                    state = record.dest
                    allow_reset = allow_reset or edge in reset_edges
                elif isinstance(effect, StartTask):
                    assert effect.task not in self.running, f"{effect.task} started twice"
                    self.running[effect.task] = effect.generation
                elif isinstance(effect, CancelTask):
                    assert self.running.pop(effect.task, None) == effect.generation, (
                        f"cancelled {effect.task} gen {effect.generation}, not running"
                    )
                elif isinstance(effect, ScheduleTimer) and effect.timer == "backoff":
                    self.check_backoff(effect.deadline - self.now)
                elif isinstance(effect, ReleaseLink):
                    assert effect.link not in self.released, f"link {effect.link} released twice"
                    self.released.add(effect.link)
                elif isinstance(effect, AbortLink):
                    assert effect.link in self.released, f"link {effect.link} aborted, not released"
                    self.released.discard(effect.link)
                elif isinstance(effect, SendHeartbeat):
                    assert "heartbeat" in machine.states[state].tasks, (
                        f"a heartbeat sent in {state}, which does not run one"
                    )
            assert state == lifecycle.state, f"effects end in {state}, model in {lifecycle.state}"
            self.check_failure_count(allow_reset)

        def check_backoff(self, delay: float) -> None:
            lifecycle = self.lifecycle
            if lifecycle.exhausted:
                assert delay == 0, f"exhausted but waits {delay}"
                return
            failure = lifecycle.last_failure
            error_class = failure.error_class if failure else machine.classifier.default
            policy = machine.classifier.policy(error_class)
            low, high = config.backoff.bounds(lifecycle.failures, error_class)
            widest = max(
                high,
                policy.min_delay,
                config.planned_reconnect_delay,
                config.retry_after_cap if policy.retry_after else 0.0,
            )
            # The delay is read back as deadline - now: allow for that rounding.
            slack = 1e-9 * max(1.0, abs(self.now))
            assert -slack <= delay <= widest + slack, f"backoff {delay} outside [0, {widest}]"
            if policy.action == "retry":
                assert delay >= low - slack, f"backoff {delay} below the policy's floor {low}"

        def check_failure_count(self, allow_reset: bool) -> None:
            previous, self.failures = self.failures, self.lifecycle.failures
            if self.failures < previous:
                assert self.failures == 0, f"failures went {previous} -> {self.failures}"
                assert allow_reset, f"failures reset {previous} -> 0 without stability"

        # -- invariants ----------------------------------------------------------------

        @invariant()
        def state_is_a_spec_state(self) -> None:
            assert self.lifecycle.state in spec.states, f"unknown state {self.lifecycle.state}"

        @invariant()
        def running_tasks_are_the_states_tasks(self) -> None:
            lifecycle = self.lifecycle
            expected = set(machine.states[lifecycle.state].tasks)
            assert set(self.running) == expected, (
                f"running {sorted(self.running)} in {lifecycle.state}, spec {sorted(expected)}"
            )
            if lifecycle.state != spec.initial or lifecycle.generation:
                assert all(g == lifecycle.generation for g in self.running.values()), (
                    f"tasks {self.running} not of generation {lifecycle.generation}"
                )

        @invariant()
        def the_next_deadline_is_the_earliest_of_all(self) -> None:
            lifecycle = self.lifecycle
            deadlines = lifecycle.deadlines()
            expected = min(deadlines.values()) if deadlines else None
            assert lifecycle.next_deadline() == expected, (
                f"next_deadline {lifecycle.next_deadline()} but deadlines {deadlines}"
            )
            assert len(lifecycle.closing) == len(self.released), (
                f"closing {sorted(lifecycle.closing)}, released {sorted(self.released)}"
            )

        @invariant()
        def timers_are_the_states_timers(self) -> None:
            lifecycle = self.lifecycle
            armed, declared = set(lifecycle.timers), set(machine.timers[lifecycle.state])
            assert armed <= declared, (
                f"timers {sorted(armed)} armed in {lifecycle.state}, spec {sorted(declared)}"
            )

    SpecStateMachine.__name__ = SpecStateMachine.__qualname__ = f"{_camel(spec.name)}StateMachine"
    return SpecStateMachine


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_")) or "Spec"
