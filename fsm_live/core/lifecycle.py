"""One connection's lifecycle: the spec's run plus the policies, every deadline, every frame.

A :class:`Lifecycle` is a :class:`~fsm_live.core.run.SpecRun` of the shared
:class:`LifecycleMachine`.  It is sans-I/O: :meth:`Lifecycle.handle` takes an
event stamped with ``now`` (:mod:`fsm_live.core.events`) and returns the effects
the driver carries out (:mod:`fsm_live.core.effects`); :meth:`Lifecycle.next_deadline`
is the one time to call it again with a ``Tick`` (aioquic's ``get_timer`` /
``handle_timer``).  It owns every deadline of a connection (:meth:`Lifecycle.deadlines`
lists them by kind) and the delivery ledger of its frames.

Extra state, kept beside the spec's ``state`` (the rest of a connection's state
is the spec's; h11's ``_state.py`` declares its own the same way):

=====================  ===============================================================
``failures``           retryable failures counted since the last stable session or reset
``stable``             the current (or last) session proved itself: up for
                       ``stability_window``, or a heartbeat ack or a message arrived
``escalations``        escalations run since the last stable session
``last_failure``       the latest failure: its class picks the backoff; stats show it
``credentials_stale``  an auth failure asked for fresh credentials: each dial refreshes
                       them first, until one refresh succeeded
``auth_retried``       fresh credentials were obtained after an auth failure and have not
                       connected yet: another auth failure is fatal
``terminal``           this failed state was entered by a terminal failure: only ``Reset``
                       (or ``Close``) leaves it
``escalating``         the escalation hook runs in this failed state
``link``               the current link (the generation of the state that dialled it)
``closing``            links released and still closing: their abort deadlines
``liveness``           heartbeat schedule, heartbeats in flight, evidence of life, the
                       application's backpressure (:mod:`fsm_live.core.liveness`)
``token``, ``cookies`` when each credential is refreshed, by age
                       (:mod:`fsm_live.core.renewal`)
``ledger``             every outbound frame not done yet (:mod:`fsm_live.core.ledger`)
``dedup``              inbound message ids seen (:mod:`fsm_live.core.dedup`)
``endpoint``           the endpoint this connection dials, shared with the others that
                       dial it (:mod:`fsm_live.core.endpoint`): down or up, whose turn
                       it is to probe it
=====================  ===============================================================

The policies (docs/lifecycle.md describes them for users):

* **timers** a state declares in the spec are armed on entry and disarmed on
  exit: ``open_timeout``, ``heartbeat_timeout`` (silence: moved by every
  complete inbound frame, suspended while reading is paused), ``stability``,
  ``backoff`` (the config's policy, Retry-After honoured and capped, a class's
  ``min_delay``, paced when a pacer is shared), ``failed_retry`` (jittered);
  built in, bound by name: a user's registry cannot take these names;
* **failure counting** by the error class's action; ``planned`` closes count
  only while the session was not yet stable;
* **auth**: an auth failure marks the credentials stale; the next dial refreshes
  them first (and every later dial, until a refresh succeeded); an auth failure
  with freshly refreshed credentials is ``fatal``;
* **escalation**: its success fires ``reset``; a failed state reached by
  retryable failures leaves by itself after ``failed_retry_delay`` once its
  escalation, if any, did not recover (the ``retryable`` guard);
* **activities** of the success state, run as deadlines here: heartbeats every
  ``heartbeat_interval`` (``SendHeartbeat``), token and cookie refreshes by the
  credential's age (``RunRefresh``; a new token is applied by a planned
  ``rotate``), the de-duplication sweep every ``cleanup_interval``;
* **links**: leaving a state that holds the link for one that does not release
  it (``ReleaseLink``); a released link not closed within ``close_timeout`` is
  aborted (``AbortLink``);
* **requests**: an outbound frame awaiting an acknowledgement is given up at its
  deadline (``RequestsExpired``);
* **the endpoint**: a failure of a class the spec marks ``endpoint: true`` is the
  endpoint's too; once it is down, the connection waits for it (``wait``, guard
  ``endpoint_down``: the state with the ``probe`` timer) instead of counting the
  outage as its own failures, and dials when its ``probe`` timer fires: its turn to
  probe, or its paced slot once the endpoint is back.  One WARNING says the endpoint
  went down, one line that it is back, one ERROR if it stays down past
  ``outage_error_after``.

The trigger vocabulary the event mapping uses is :data:`REQUIRED_TRIGGERS`;
specs for real connections must provide it (checked at construction).
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from fsm_live.core.classify import Classifier, Failure
from fsm_live.core.dedup import Deduplicator
from fsm_live.core.effects import (
    AbortLink,
    Effect,
    Notice,
    ReleaseLink,
    RequestsExpired,
    RunRefresh,
    SendHeartbeat,
    StartTask,
)
from fsm_live.core.endpoint import DOWN, PROBE, UP, Endpoint, EndpointChanged
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
    Reset,
    Rotate,
    Start,
    Tick,
    TriggerFired,
)
from fsm_live.core.ledger import Ledger
from fsm_live.core.liveness import Liveness
from fsm_live.core.machine import SpecMachine
from fsm_live.core.pacing import ReconnectPacer
from fsm_live.core.renewal import Renewal
from fsm_live.core.run import SpecRun
from fsm_live.core.settings import LifecycleSettings
from fsm_live.errors import SpecError, TransitionRefused
from fsm_live.spec import LIFECYCLE_VOCABULARY, Registry, Spec, StateSpec

__all__ = (
    "BUILT_IN_TIMERS",
    "CORE_TASKS",
    "DEADLINE_KINDS",
    "FAILURE_TRIGGERS",
    "LIFECYCLE_REGISTRY",
    "PROBE_TIMER",
    "REQUIRED_TRIGGERS",
    "Lifecycle",
    "LifecycleMachine",
    "deliver_to_lifecycle",
)

#: Triggers that carry a recoverable failure, tried in this order from the current state.
FAILURE_TRIGGERS: Final = ("connect_failed", "lost")
#: Triggers the event mapping of :meth:`Lifecycle.handle` fires.
REQUIRED_TRIGGERS: Final = frozenset(
    {"start", "opened", "connect_failed", "lost", "rotate", "fatal", "reset", "close"}
)
#: Every kind of deadline a lifecycle keeps (the keys of :meth:`Lifecycle.deadlines`):
#: the spec's timers by name, and these.
DEADLINE_KINDS: Final = (
    "heartbeat",
    "pause_warning",
    "token_refresh",
    "cookie_refresh",
    "cleanup",
    "close_link",
    "request",
)
#: The failure kind and reason a timer's expiry reports.
_TIMER_FAILURES: Final = {
    "open_timeout": ("timeout", "open timeout"),
    "heartbeat_timeout": ("heartbeat_timeout", "nothing received within the heartbeat timeout"),
}
#: Close codes of a released link (RFC 6455 section 7.4.1).
_NORMAL_CLOSURE: Final = 1000
_INTERNAL_ERROR: Final = 1011
#: The packaged tasks this module runs as deadlines (the driver starts none of them).
CORE_TASKS: Final = frozenset({"heartbeat", "token_refresh", "cookie_refresh", "cleanup"})
#: The task that dials: a state running it holds the link it dials.
_DIAL: Final = "dial"
#: The timer of the state that waits for its endpoint (its role, by the timer it keeps).
PROBE_TIMER: Final = "probe"
#: The trigger by which a failure waits for its endpoint, and the one that backs off.
_WAIT: Final = "wait"
_BACKOFF: Final = "backoff"


class LifecycleMachine(SpecMachine):
    """A :class:`SpecMachine` plus the spec's error table, ready to drive lifecycles.

    Build one per spec and registry and share it; each :class:`Lifecycle` refers
    to it.  Its guards are those of :data:`LIFECYCLE_REGISTRY` plus
    ``registry``'s; tasks and timers the spec declares itself must be bound in
    ``registry`` (the runtime runs a task as ``async func(context)``).  The
    packaged lifecycle's names (its tasks, timers and guards) are built in: a
    registry binding one is refused, so a user's name is never silently taken.
    Raises :class:`~fsm_live.errors.SpecError` listing every problem, with file
    and line where the spec declares the name.
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
        if registry is not None:
            _refuse_built_in_names(spec, registry)
            registry = LIFECYCLE_REGISTRY | registry
        else:
            registry = LIFECYCLE_REGISTRY
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


def _refuse_built_in_names(spec: Spec, registry: Registry) -> None:
    """SpecError for each name ``registry`` binds that the packaged lifecycle implements."""
    problems = []
    for kind in ("guard", "task", "timer", "action"):
        for name in sorted(LIFECYCLE_VOCABULARY.names(kind)):
            if (kind, name) in registry:
                declared = spec.known.get(kind, name)
                where = (
                    f"{spec.source}:{declared.line}"
                    if declared and declared.line
                    else (f"{spec.source}")
                )
                problems.append(
                    f"{where}: {kind} {name!r} is built into the connection lifecycle; "
                    f"registry {registry.name!r} cannot bind it (give yours another name)"
                )
    if problems:
        raise SpecError(problems)


class Lifecycle(SpecRun):
    """The state, policies and deadlines of one connection.  Not thread-safe: one
    driver feeds it.

    ``random`` (floats in [0, 1)) is the jitter source; inject a seeded one in
    tests.  ``can_refresh_credentials`` says whether an auth failure may be
    answered with a refresh and a retry (a connection without a credentials
    provider goes FAILED at once).  ``refreshable`` names the credentials the
    provider can refresh by age (``"token"``, ``"cookies"``).  ``pacer``, shared
    with other connections, may move each backoff deadline later to bound their
    attempts per second.
    """

    __slots__ = (
        "_dedup",
        "auth_retried",
        "can_refresh_credentials",
        "cleanup_at",
        "closing",
        "config",
        "cookies",
        "credentials_stale",
        "endpoint",
        "escalating",
        "escalations",
        "failures",
        "last_failure",
        "ledger",
        "link",
        "liveness",
        "pacer",
        "random",
        "report",
        "stable",
        "terminal",
        "token",
    )

    machine: LifecycleMachine

    def __init__(
        self,
        machine: LifecycleMachine,
        config: LifecycleSettings,
        *,
        random: Callable[[], float] | None = None,
        can_refresh_credentials: bool = False,
        refreshable: Collection[str] = (),
        pacer: ReconnectPacer | None = None,
        endpoint: Endpoint | None = None,
        now: float = 0.0,
    ) -> None:
        super().__init__(machine, now=now)
        #: The endpoint it dials (shared by a fleet's members that dial the same one);
        #: None: the endpoint rule is off (each failure is the connection's own).
        self.endpoint = endpoint
        if endpoint is not None:
            endpoint.join(self)
        #: How an event reaches this lifecycle later, through its driver (rule 1): set
        #: by the driver; an endpoint shared with other connections delivers through it.
        self.report: Callable[[Event], None] = _unheard
        self.config = config
        self.pacer = pacer
        self.random = random or _random.random
        self.can_refresh_credentials = can_refresh_credentials
        self.failures = 0
        self.stable = False
        self.escalations = 0
        self.last_failure: Failure | None = None
        self.credentials_stale = False
        self.auth_retried = False
        self.terminal = False
        self.escalating = False
        self.link: int | None = None
        self.closing: dict[int, float] = {}
        self.liveness = Liveness(config.heartbeat_interval, config.heartbeat_timeout, now)
        self.token = (
            Renewal(config.token_refresh_interval, config.token_retry_interval)
            if "token" in refreshable
            else None
        )
        self.cookies = (
            Renewal(config.cookie_refresh_interval, config.token_retry_interval)
            if "cookies" in refreshable
            else None
        )
        self.cleanup_at = math.inf
        self.ledger = Ledger(config.outbound_buffer)
        self._dedup: Deduplicator | None = None  # made by the first message id

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
        the stability window (otherwise they only count as evidence of life)."""
        return "stability" in self.timers

    @property
    def retryable(self) -> bool:
        """The ``retryable`` guard: this failed state was reached by retryable
        failures (not a terminal one), ``config.failed_retry`` is on, and no
        escalation is running."""
        return self.config.failed_retry and not self.terminal and not self.escalating

    @property
    def needs_reset(self) -> bool:
        """True in a failed state that the connection will not leave by itself:
        after a terminal failure (or with ``failed_retry`` off), once its
        escalation, if any, did not recover.  Only :class:`Reset` (or ``Close``)
        leaves it then."""
        if not self.machine.states[self.state].failed or self.escalating:
            return False
        return not (self.retryable and "failed_retry" in self.timers)

    @property
    def endpoint_down(self) -> bool:
        """The ``endpoint_down`` guard: the endpoint this connection dials is down."""
        return self.endpoint is not None and not self.endpoint.up

    @property
    def reading_paused(self) -> bool:
        """True while the application is behind and the client does not read."""
        return self.liveness.paused_at is not None

    @property
    def last_inbound(self) -> float:
        """The latest evidence of life of the current link."""
        return self.liveness.last_inbound

    @property
    def dedup(self) -> Deduplicator:
        """The inbound message ids seen (made at first use: most protocols have none)."""
        if self._dedup is None:
            config = self.config
            self._dedup = Deduplicator(config.message_expire_time, config.dedup_max_entries)
        return self._dedup

    def next_deadline(self) -> float | None:
        """The earliest deadline of any kind, or None: call ``handle(Tick(now))`` then."""
        liveness = self.liveness
        deadline = min(
            min(self.timers.values(), default=math.inf),
            liveness.next_heartbeat,
            liveness.warning_deadline(),
            self._cleanup_deadline(),
            self.ledger.next_deadline(),
        )
        if self.token is not None:
            deadline = min(deadline, self.token.deadline())
        if self.cookies is not None:
            deadline = min(deadline, self.cookies.deadline())
        if self.closing:
            deadline = min(deadline, *self.closing.values())
        return None if deadline == math.inf else deadline

    def deadlines(self) -> dict[str, float]:
        """Every armed deadline by kind (the spec's timers by name, then
        :data:`DEADLINE_KINDS`); :meth:`next_deadline` is their minimum."""
        liveness = self.liveness
        kinds = {
            **self.timers,
            "heartbeat": liveness.next_heartbeat,
            "pause_warning": liveness.warning_deadline(),
            "token_refresh": math.inf if self.token is None else self.token.deadline(),
            "cookie_refresh": math.inf if self.cookies is None else self.cookies.deadline(),
            "cleanup": self._cleanup_deadline(),
            "close_link": min(self.closing.values(), default=math.inf),
            "request": self.ledger.next_deadline(),
        }
        return {kind: deadline for kind, deadline in kinds.items() if deadline != math.inf}

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
                self.note_inbound(event.now)
            return []
        if isinstance(event, Tick):
            return self._collect(self._on_tick, event.now)
        if isinstance(event, Start):
            if self.cookies is not None:
                # Given with the provider: their age counts from the start, on the
                # driver's clock (a monotonic clock reads hours, not 0, on most hosts).
                self.cookies.obtained(event.now)
            return self.fire("start", event.now, reason="started")
        if isinstance(event, Close):
            if self.is_final:
                return []
            return self.fire("close", event.now, reason=event.reason)
        if isinstance(event, Reset):
            return self.fire("reset", event.now, reason=event.reason)
        if isinstance(event, LinkClosed):
            self.closing.pop(event.link, None)
            return []
        if isinstance(event, CredentialsRefreshed):
            return self._collect(self._on_refreshed, event)
        if isinstance(event, EndpointChanged):
            return self._collect(self._on_endpoint, event)
        if event.generation != self.generation:
            return []
        if isinstance(event, HeartbeatAcked | MessageReceived):
            self.note_inbound(event.now)
            if self.timers.pop("stability", None) is not None:
                self._become_stable()
            return []
        if isinstance(event, ReadingPaused):
            if self.link is not None:  # only a link held is read (or not)
                self.liveness.pause(event.now)
                self._move_silence_deadline()
            return []
        if isinstance(event, ReadingResumed):
            return self._collect(self._on_resumed, event.now)
        if isinstance(event, Opened):
            if self.token is not None:
                self.token.obtained(self.entered_at)  # the dial fetched it
            effects = self.fire("opened", event.now, reason="opened")
            endpoint = self.endpoint
            if endpoint is not None:
                waiting = endpoint.waiting
                down_for = endpoint.connected(self, event.now)
                if down_for is not None:
                    # Measured from when it was known down (endpoint_failures in a
                    # row), not from its first failure; others only when some wait.
                    back = f"endpoint {endpoint.key} is back (known down for {down_for:.1f} s)"
                    if waiting:
                        back += (
                            "; 1 waiting connection reconnects"
                            if waiting == 1
                            else f"; {waiting} waiting connections reconnect"
                        )
                    effects.append(Notice("INFO", back))
            return effects
        if isinstance(event, LinkFailed):
            return self._on_failure(event.now, event.failure)
        if isinstance(event, Rotate):
            return self.fire("rotate", event.now, reason=event.reason)
        if isinstance(event, TriggerFired):
            return self.fire(event.trigger, event.now, reason=event.reason or event.trigger)
        return self._on_escalation(event)

    def fire(
        self,
        trigger: str,
        now: float,
        *,
        failure: Failure | None = None,
        reason: str = "",
        **data: Any,
    ) -> list[Effect]:
        """Fire ``trigger`` at ``now`` (the one typed way in); return the effects.

        A ``failure`` is counted first (by its class's action), so guards such as
        ``exhausted`` see it.  Returns no effects when guards refused every
        transition, and then the failure is not counted either: a refused trigger
        changes nothing.  Raises :class:`TransitionRefused` if the current state
        has no transition for ``trigger``.
        """
        return self._collect(self._fire_counted, trigger, now, failure, reason, data)

    def note_inbound(self, at: float) -> None:
        """Evidence of life at ``at`` (a complete inbound frame, or progress of our own
        write backlog acknowledged by the peer): the silence deadline moves later.
        Direct (no effects), for the driver's hot path."""
        if self.liveness.note(at) and "heartbeat_timeout" in self.timers:
            self._move_silence_deadline()

    def heartbeat_sent(self, heartbeat_id: Any, now: float) -> None:
        """The driver sent the heartbeat ``SendHeartbeat`` asked for, with this id."""
        self.liveness.sent(heartbeat_id, now)

    def heartbeat_acked(self, heartbeat_id: Any, now: float) -> float | None:
        """An ack of ``heartbeat_id`` arrived: its round trip in seconds, or None if it
        acknowledges nothing we have in flight.  Follow with :class:`HeartbeatAcked`
        while :attr:`awaits_proof`."""
        rtt = self.liveness.acked(heartbeat_id, now)
        if rtt is not None and self.endpoint is not None:
            self.endpoint.alive()
        return rtt

    # -- hooks of SpecRun ----------------------------------------------------------------

    def timer_duration(self, name: str, now: float) -> float:
        built_in = BUILT_IN_TIMERS.get(name)
        if built_in is None:
            return super().timer_duration(name, now)
        return built_in(self, now)

    def timer_due(self, name: str, deadline: float, now: float) -> bool:
        """A paced attempt goes only if its pacer lets it (:meth:`ReconnectPacer.due`):
        after a stall of the event loop (a garbage collection over a large heap,
        10,000 members told at once that their endpoint is back) the slots that passed
        are due together, and those past the rate take new slots instead of going at
        once: the rate holds at the server whatever the loop did."""
        pacer = self.pacer
        if pacer is None or not (
            (name == _BACKOFF and not self.exhausted)
            or (name == PROBE_TIMER and self.endpoint is not None and self.endpoint.up)
        ):
            return True
        slot = pacer.due(now)
        if slot is None:
            return True
        self.timers[name] = slot
        return False

    def timer_expired(self, name: str, now: float) -> None:
        if name == "stability":
            self._become_stable()
            return
        endpoint = self.endpoint
        if name == PROBE_TIMER and endpoint is not None:
            down_for = endpoint.due_report(now, self.config.outage_error_after)
            if down_for is not None:
                waiting = endpoint.waiting
                self._effects.append(
                    Notice(
                        "ERROR",
                        f"endpoint {endpoint.key} has been down for {down_for:.0f} s "
                        f"({waiting} connection{'' if waiting == 1 else 's'} waiting for it)",
                    )
                )
            endpoint.probing(self)
        facts = _TIMER_FAILURES.get(name)
        failure = None
        if facts is not None:
            failure = self.machine.classifier.classify(kind=facts[0], reason=facts[1])
            if self._wait_for_endpoint(now, failure):
                return  # an endpoint that no longer answers is down like one that refuses
            reason = ""
        elif name == "failed_retry":
            reason = "failed_retry_delay elapsed: retrying with the failure count reset"
        elif name == PROBE_TIMER and endpoint is not None:
            # One timer, two purposes: say which (a reconnect is not a probe).
            reason = "the endpoint is back" if endpoint.up else "its turn to probe the endpoint"
        elif name != "backoff":
            reason = f"{name} elapsed"
        elif self.exhausted:
            limit = self.config.max_failures
            reason = f"{_failures(self.failures)} in a row (max_failures {limit})"
        elif self.credentials_stale:
            reason = "retry with refreshed credentials"
        else:
            reason = "backoff elapsed"
        for trigger in self.machine.timers[self.state][name].triggers:
            if self._fire_counted(trigger, now, failure, reason, {}):
                return
            failure = None  # counted once, whichever trigger takes it

    def abandon(self, now: float) -> Endpoint | None:
        """It will never run (its connection could not be entered, or a fleet built it
        only to check an account another worker runs): it leaves its endpoint, which
        counts it no more, and returns it.  Idempotent."""
        if self.endpoint is not None:
            self.endpoint.leave(self, now)
        return self.endpoint

    def entering(self, state: StateSpec, now: float) -> None:
        if not state.failed:
            self.terminal = False
        endpoint = self.endpoint
        if endpoint is not None:
            if state.final:
                endpoint.leave(self, now)
            elif PROBE_TIMER in self.machine.timers[state.name]:
                endpoint.wait(self, now)
        self.escalating = "escalation" in state.tasks
        tasks = state.tasks
        if _DIAL in tasks:
            self.link = self.generation
        self.liveness.begin(now)
        if "heartbeat" in tasks:
            self.liveness.start_heartbeats(now)
        if "cleanup" in tasks:
            self.cleanup_at = now + self.config.cleanup_interval
        if self.token is not None and "token_refresh" in tasks:
            self.token.active = True
        if self.cookies is not None and "cookie_refresh" in tasks:
            self.cookies.active = True

    def leaving(self, state: StateSpec, now: float) -> None:
        if self.endpoint is not None and PROBE_TIMER in self.machine.timers[state.name]:
            self.endpoint.resume(self, now)
        tasks = state.tasks
        if "heartbeat" in tasks:
            self.liveness.stop_heartbeats()
        if "cleanup" in tasks:
            self.cleanup_at = math.inf
        for renewal, task in ((self.token, "token_refresh"), (self.cookies, "cookie_refresh")):
            if renewal is not None and (task in tasks or _DIAL in tasks):
                renewal.active = False
                renewal.running = False  # its job (or the dial's refresh) is cancelled

    def _start(self, task: str) -> StartTask:
        if task == _DIAL:
            refresh_token = self.token is not None and self.token.due(self.entered_at)
            if refresh_token:
                assert self.token is not None
                self.token.started()
            return StartTask(
                task,
                self.generation,
                refresh_credentials=self.credentials_stale,
                may_escalate=self.may_escalate,
                refresh_token=refresh_token,
            )
        return StartTask(task, self.generation, may_escalate=self.may_escalate)

    # -- internals ---------------------------------------------------------------------

    def _fire_counted(
        self, trigger: str, now: float, failure: Failure | None, reason: str, data: dict[str, Any]
    ) -> bool:
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
            **data,
        )
        if not taken:
            self.failures, self.last_failure = counted
        return taken

    def _count_failure(self, failure: Failure) -> None:
        self.last_failure = failure
        action = self.machine.classifier.policy(failure.error_class).action
        if action == "retry" or (action == "planned" and not self.stable):
            self.failures += 1

    def _wait_for_endpoint(self, now: float, failure: Failure) -> bool:
        """A failure of a class the spec marks ``endpoint``, reported by a link or found
        by a timer (an open timeout, a heartbeat timeout): the endpoint counts it, and
        if that makes it down (or it was), this connection waits for it.  True if it
        waits.  The outage is not this connection's failure: the transition carries
        no failure, so it counts neither toward max_failures nor in stats.failures
        (the reason names it)."""
        policy = self.machine.classifier.policy(failure.error_class)
        endpoint = self.endpoint
        if not (policy.endpoint and endpoint is not None and self.allows(_WAIT)):
            return False
        was_up = endpoint.up
        retry_after = 0.0
        if policy.retry_after and failure.retry_after is not None:
            retry_after = min(failure.retry_after, self.config.retry_after_cap)
        if not endpoint.failed(self, now, retry_after):
            return False
        mark = len(self._effects)
        if not self._fire(_WAIT, now, str(failure), {}):
            return False
        if was_up:
            self._effects.insert(
                mark,
                Notice(
                    "WARNING",
                    f"endpoint {endpoint.key} is down ({_failures(endpoint.down_after)} "
                    "in a row): its connections wait for it, one probing every "
                    f"{endpoint.probe_interval:g} s or so",
                ),
            )
        self.last_failure = failure
        return True

    def _on_failure(self, now: float, failure: Failure) -> list[Effect]:
        effects = self._collect(self._wait_for_endpoint, now, failure)
        if effects:
            return effects
        policy = self.machine.classifier.policy(failure.error_class)
        action = policy.action
        refresh = action == "refresh" and self.can_refresh_credentials and not self.auth_retried
        if action == "fail" or (action == "refresh" and not refresh):
            trigger: str | None = "fatal"
        else:
            trigger = self.machine.failure_trigger[self.state]
        if trigger is None or trigger not in self.machine.allowed[self.state]:
            raise TransitionRefused(self.state, trigger or FAILURE_TRIGGERS[0])
        if refresh:
            self.credentials_stale = True  # kept until a refresh succeeded
        self.terminal = trigger == "fatal"
        return self.fire(trigger, now, failure=failure)

    def _on_refreshed(self, event: CredentialsRefreshed) -> None:
        now = event.now
        if event.kind == "auth":
            if event.ok and event.generation == self.generation:
                self.credentials_stale = False
                self.auth_retried = True
            return
        renewal = self.token if event.kind == "token" else self.cookies
        if renewal is None:
            return
        renewal.finished(now, event.ok)
        current = event.generation == self.generation
        if (
            event.kind == "token"
            and event.ok
            and event.changed
            and current
            and self.machine.states[self.state].success
            and self.allows("rotate")
        ):
            self._fire_counted("rotate", now, None, "token refreshed", {})

    def _on_endpoint(self, event: EndpointChanged) -> None:
        now = event.now
        if event.what == DOWN:
            if _BACKOFF in self.timers and self.allows(_WAIT):
                # Backing off alone: wait with the others instead.
                self._fire(_WAIT, now, "the endpoint is down", {})
            elif PROBE_TIMER in self.timers and self.endpoint is not None:
                # Down again before its slot to reconnect came: its turn to probe again.
                self.timers[PROBE_TIMER] = self.endpoint.probe_deadline(self)
        elif event.what == UP:
            if PROBE_TIMER in self.timers:  # dial at once, in a slot of the fleet's pacer
                self.timers[PROBE_TIMER] = (
                    now if self.pacer is None else self.pacer.reserve(now, now)
                )
        elif event.what == PROBE and PROBE_TIMER in self.timers and self.endpoint is not None:
            self.timers[PROBE_TIMER] = self.endpoint.probe_deadline(self)

    def _on_escalation(self, event: EscalationFinished) -> list[Effect]:
        self.escalations += 1
        self.escalating = False
        if event.ok:
            return self.fire("reset", event.now, reason=event.reason or "escalation succeeded")
        if "failed_retry" in self.machine.timers[self.state] and "failed_retry" not in self.timers:
            # Its timer expired while the escalation ran, and waited for it: retry now.
            return self._collect(self.timer_expired, "failed_retry", event.now)
        return []

    def _on_resumed(self, now: float) -> None:
        paused_for = self.liveness.resume(now)
        self._move_silence_deadline()
        if paused_for is not None:
            self._effects.append(Notice("INFO", f"reading resumed after {paused_for:.1f} s"))

    def _on_tick(self, now: float) -> None:
        effects = self._effects
        closing = self.closing
        if closing:
            for link, deadline in list(closing.items()):
                if deadline <= now:
                    del closing[link]
                    effects.append(AbortLink(link))
        self._expire_due(now)  # the spec's timers: they may leave the state
        liveness = self.liveness
        if liveness.heartbeat_due(now):
            effects.append(SendHeartbeat(self.generation))
        paused_for = liveness.warning_due(now)
        if paused_for is not None:
            effects.append(
                Notice(
                    "WARNING",
                    f"the application has not taken a message for {paused_for:.1f} s: "
                    "reading is paused, and the link is not declared lost for it",
                )
            )
        for renewal, kind in ((self.token, "token"), (self.cookies, "cookies")):
            if renewal is not None and renewal.deadline() <= now:
                renewal.started()
                effects.append(RunRefresh(kind, self.generation))
        if self.cleanup_at <= now:
            self.cleanup_at = now + self.config.cleanup_interval
            if self._dedup is not None:
                self._dedup.sweep(now)
        expired = self.ledger.expire(now)
        if expired:
            effects.append(RequestsExpired(tuple(entry.handle for entry in expired)))

    def _cleanup_deadline(self) -> float:
        """The sweep is due only while there is something to sweep."""
        return self.cleanup_at if self._dedup is not None and len(self._dedup) else math.inf

    def _move_silence_deadline(self) -> None:
        """Lost after ``heartbeat_timeout`` of silence (see :class:`Liveness`)."""
        if "heartbeat_timeout" in self.timers:
            self.timers["heartbeat_timeout"] = self.liveness.silence_deadline()

    def _become_stable(self) -> None:
        self.stable = True
        self.failures = 0
        self.escalations = 0

    def _backoff_deadline(self, now: float) -> float:
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
        super()._on_exit(event_data)
        link = self.link
        if link is None:
            return
        dest = self.machine.states[event_data.transition.dest]
        source = self.machine.states[self.state]
        if dest.success and (source.success or _DIAL in source.tasks):
            return  # the link dialled, or up, is the one the success state runs on
        self.link = None
        self.ledger.link_lost(link)
        failure = event_data.kwargs.get("failure")
        now: float = event_data.kwargs["now"]
        self._effects.append(
            ReleaseLink(link, _INTERNAL_ERROR if failure is not None else _NORMAL_CLOSURE)
        )
        self.closing[link] = now + self.config.close_timeout

    def _on_enter(self, event_data: Any) -> None:
        if self.machine.states[self.state].success:
            self.auth_retried = False
        super()._on_enter(event_data)

    def _on_reset_failures(self, event_data: Any) -> None:
        self.failures = 0
        self.stable = False


def _unheard(event: Event) -> None:
    """A lifecycle without a driver hears nothing later."""


def deliver_to_lifecycle(member: Any, event: EndpointChanged) -> None:
    """An :class:`~fsm_live.core.endpoint.Endpoint`'s ``deliver`` whose members are
    lifecycles: the event goes through the member's driver."""
    member.report(event)


# -- the built-in timers, by name ---------------------------------------------------------------


def _open_timeout(lifecycle: Lifecycle, now: float) -> float:
    return lifecycle.config.open_timeout


def _heartbeat_timeout(lifecycle: Lifecycle, now: float) -> float:
    return lifecycle.liveness.silence_deadline() - now


def _stability(lifecycle: Lifecycle, now: float) -> float:
    lifecycle.stable = False
    return lifecycle.config.stability_window


def _backoff(lifecycle: Lifecycle, now: float) -> float:
    return lifecycle._backoff_deadline(now) - now


def _failed_retry(lifecycle: Lifecycle, now: float) -> float:
    # Jittered, so a fleet that failed together spreads out.
    return lifecycle.config.failed_retry_after * (0.5 + 0.5 * lifecycle.random())


def _probe(lifecycle: Lifecycle, now: float) -> float:
    endpoint = lifecycle.endpoint
    return math.inf if endpoint is None else endpoint.probe_deadline(lifecycle) - now


#: How long each built-in timer runs, from the lifecycle and ``now``.
BUILT_IN_TIMERS: Final[Mapping[str, Callable[[Lifecycle, float], float]]] = {
    "open_timeout": _open_timeout,
    "heartbeat_timeout": _heartbeat_timeout,
    "stability": _stability,
    "backoff": _backoff,
    "failed_retry": _failed_retry,
    "probe": _probe,
}


# -- the packaged lifecycle's guards, bound like any spec's ----------------------------------


def _exhausted(lifecycle: Lifecycle) -> bool:
    """The ``exhausted`` guard (see :attr:`Lifecycle.exhausted`)."""
    return lifecycle.exhausted


def _retryable(lifecycle: Lifecycle) -> bool:
    """The ``retryable`` guard (see :attr:`Lifecycle.retryable`)."""
    return lifecycle.retryable


def _endpoint_down(lifecycle: Lifecycle) -> bool:
    """The ``endpoint_down`` guard (see :attr:`Lifecycle.endpoint_down`)."""
    return lifecycle.endpoint_down


#: The guards of the packaged lifecycle, bound as a user's are (``func(lifecycle)``);
#: every :class:`LifecycleMachine` uses them.  Its timers are :data:`BUILT_IN_TIMERS`;
#: its tasks are run by this module (:data:`CORE_TASKS`: deadlines) and by the
#: runtime's engine (the dial, the reader, the flush, the escalation).  Every name of
#: :data:`~fsm_live.spec.LIFECYCLE_VOCABULARY` is built in: the tests hold the tables
#: to it, and :class:`LifecycleMachine` refuses a registry that binds one.
LIFECYCLE_REGISTRY: Final = Registry("lifecycle")
LIFECYCLE_REGISTRY.bind("guard", "exhausted", _exhausted)
LIFECYCLE_REGISTRY.bind("guard", "retryable", _retryable)
LIFECYCLE_REGISTRY.bind("guard", "endpoint_down", _endpoint_down)


def _failures(count: int) -> str:
    """``1 failure``, ``3 failures``."""
    return f"{count} failure{'' if count == 1 else 's'}"
