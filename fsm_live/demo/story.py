"""The demo: one lwp client kept alive through a scripted series of faults.

:func:`run_demo` runs the story against a
:class:`~fsm_live.demo.environments.DemoEnvironment`: by default
(``fsm-live demo``) a :class:`~fsm_live.lwp.server.LwpServer` and a
:class:`~fsm_live.fault_proxy.FaultProxy` in front of it on 127.0.0.1, on
anyio's asyncio backend; in tests an in-memory one, in virtual time.  The
client is a :class:`~fsm_live.connection.LiveConnection` (protocol ``lwp``)
that dials through the network; its ``on_message`` handler takes and counts
every message, as an application would.  Its access token comes from the
server's token endpoint across the network, so its escalation, a re-login that
fetches a fresh token, fails while the network is down, as a real one would.
The outage steps add a second client of the same server that shares the
endpoint (:func:`~fsm_live.connection.new_endpoint`).
Then the story runs; each step starts at its share of ``duration`` (or once the
previous step finished, if later) and waits for the outcome it provokes:

1. a clean session: pushes of several items, some of them duplicates (dropped),
   a few messages sent; it lasts until the token refresh task fetched a new token
   and applied it by a planned ``rotate``;
2. a half-open link: the network swallows everything both ways; only the heartbeat
   timeout notices (``lost``), then the network heals;
3. a server restart: every connection closed with 1012, nothing listening for
   a moment (``connect_failed``: refused), then back;
4. a dropped link whose reconnect is answered HTTP 401: one credential refresh,
   one immediate retry, CONNECTED;
5. a terminal close (4500): ``fatal``, FAILED; the escalation (re-login) succeeds:
   ``reset``;
6. the account's own failures: its registration refused twice (one credential
   refresh, then ``fatal`` while CONNECTING), the escalation recovers (``reset``);
   then each new session closed with 4001 (class ``retry``) as it opens,
   ``max_failures`` times: ``give_up``; the escalation already ran since the last
   stable session, so FAILED retries by itself (``recover``);
7. the server is overloaded (every new handshake answered 503, open sessions
   kept) and a second client of the same server starts, sharing the endpoint:
   refused ``endpoint_failures`` times in a row, the endpoint is down and it waits;
   the demo's client's link drops and it waits too, from CONNECTED (``wait``,
   WAITING), instead of failing on its own; the two take turns probing the endpoint
   (``probe``; a probe refused waits again, from CONNECTING), until the overload
   is over and a probe connects;
8. the network goes down: both links drop; the second client retries first, the
   endpoint is down, and the demo's client, still backing off, waits for it (from
   RECONNECTING): no FAILED for an outage; it probes in turn;
9. the network comes back: the next probe connects, and both clients are
   CONNECTED by themselves; the second client closes;
10. the application closes the connection: CLOSED.

Together the steps take every transition of the spec (each source of ``wait``,
``fatal`` and the others; ``close`` from CONNECTED), which tests/test_demo.py
checks against the spec.

Every transition goes to the trace file; :func:`summarize` counts edges and
failure classes from the trace's records and checks them against the
connection's own counters, so the summary and the trace agree by construction.
The second client's transitions are shown as notes, not traced.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import attrs

from fsm_live._runtime.stats import Stats
from fsm_live._runtime.trace import read_trace
from fsm_live.config import Config
from fsm_live.connection import LiveConnection, new_endpoint
from fsm_live.core.backoff import ExponentialJitter, FixedDelay
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.lifecycle import FAILURE_TRIGGERS
from fsm_live.credentials import Secret
from fsm_live.demo.environments import (
    ITEMS_PER_PUSH,
    PUSH_INTERVAL,
    DemoEnvironment,
    SocketEnvironment,
)
from fsm_live.errors import ConfigError, FsmLiveError
from fsm_live.lwp.credentials import CookieCredentials
from fsm_live.lwp.faults import (
    CloseConnections,
    Drop,
    Fault,
    RefuseRegistration,
    Reject,
    Restart,
)
from fsm_live.lwp.service import FaultEvent, LwpServerStats
from fsm_live.lwp.token import TokenFetchFailed
from fsm_live.spec import Spec
from fsm_live.transport.tcp import target_for

__all__ = (
    "DEFAULT_DURATION",
    "MIN_DURATION",
    "DemoEnvironment",
    "DemoEvent",
    "DemoObserver",
    "DemoReport",
    "DemoSummary",
    "StoryStuck",
    "demo_config",
    "run_demo",
    "summarize",
)

logger = logging.getLogger("fsm_live.demo")

DEFAULT_DURATION: Final = 30.0
#: Below this the fixed timings (3 s heartbeat timeout, ...) no longer fit the story
#: (its steps take about 23 s when they follow each other at once).
MIN_DURATION: Final = 25.0
#: The demo account's cookies (made up; ``unb`` is the user id).
DEMO_COOKIES: Final = "unb=2206600001; cna=demo-cna; _m_h5_tk=demo-h5"
#: How long the server is down in the restart step: shorter than the client's
#: smallest two backoff delays, so the restart alone never exhausts max_failures.
RESTART_DOWNTIME: Final = 0.25
#: FAILED retries by itself after this (jittered to 50-100 %): short enough that it
#: happens within the story's shortest step.
FAILED_RETRY_DELAY: Final = 2.0
#: Triggers whose records may carry a failure (their reason then reads ``class: why``;
#: a ``wait`` because others found the endpoint down carries none).
_FAILURE_TRIGGERS: Final = frozenset({*FAILURE_TRIGGERS, "fatal"})
_POLL: Final = 0.05  # the longest a step waits before checking its outcome again
#: The close code by which the server turns the account's sessions away (class ``retry``:
#: the account's own failure, counted toward max_failures; not the endpoint's).
RETRY_CLOSE: Final = 4001
#: The second client of the outage steps, another account on the same server.
SECOND: Final = "the second client"
SECOND_COOKIES: Final = "unb=2206600002; cna=demo-cna-2"
#: It notices a silent or unreachable endpoint first, and retries at once: so the
#: endpoint is down before the demo's own client notices anything (its heartbeat
#: timeout is 3 s), or while that client is still backing off (0.15 s at least).
SECOND_CONFIG: Final = Config(
    heartbeat_interval=0.25,
    heartbeat_timeout=0.5,
    stability_window=1.0,
    backoff=FixedDelay(0.05),
    max_failures=10,
    open_timeout=0.5,
    close_timeout=1.0,
)
#: Handshakes the overloaded server answers 503 (more than the overload step needs:
#: the story ends the overload itself).
OVERLOAD_REJECTS: Final = 1000
#: How often the overload step starts over when the demo's client itself dialled into
#: the overload (a token refresh's rotate at that moment) instead of staying up.
OVERLOAD_ATTEMPTS: Final = 3
#: What the spec's states do, by the names of the packaged lifecycle: waiting out a
#: backoff delay, dialling.
BACKOFF: Final = "backoff"
DIAL: Final = "dial"


class StoryStuck(FsmLiveError, RuntimeError):
    """A step of the story did not reach its outcome in time (the demo exits 1)."""


def demo_config(duration: float) -> Config:
    """The compressed configuration the demo's client runs with.

    Heartbeat every 1 s, lost after 3 s of silence, stable after 2 s; a token
    refresh a fifth of the way into the run; backoff 0.15-2 s; FAILED after 3
    failures in a row, and out of it by itself 1-2 s later (after retryable ones);
    one escalation (re-login) per stable session (the default ``max_escalations``);
    the endpoint down after 3 failures in a row, probed every 0.5 s or so.
    """
    return Config(
        heartbeat_interval=1.0,
        heartbeat_timeout=3.0,
        stability_window=2.0,
        token_refresh_interval=round(duration / 5, 3),
        token_retry_interval=duration,
        backoff=ExponentialJitter(initial=0.25, maximum=2.0, floor=0.15),
        planned_reconnect_delay=0.5,
        max_failures=3,
        failed_retry_delay=FAILED_RETRY_DELAY,
        open_timeout=2.0,
        close_timeout=1.0,
        endpoint_failures=3,
        probe_interval=0.5,
    )


@attrs.frozen
class DemoEvent:
    """Something the story did or saw, ``at`` seconds after the client started.

    ``kind`` is ``"step"`` (a new chapter), ``"fault"`` (injected now) or
    ``"note"`` (an outcome no transition shows, e.g. an escalation that failed).
    """

    at: float
    kind: str
    text: str


class DemoObserver(Protocol):
    """Where the demo reports as it runs (the CLI prints or draws it)."""

    def attach(self, conn: LiveConnection, duration: float) -> None:
        """The client exists (called once, before it starts)."""

    def transition(self, record: TransitionRecord) -> None:
        """A transition was taken (called inside the connection's driver: be quick)."""

    def event(self, event: DemoEvent) -> None:
        """A step started, a fault was injected, or a note."""

    def messages_taken(self, count: int) -> None:
        """The application took a message; ``count`` so far (called per message: be quick)."""


@attrs.frozen
class DemoSummary:
    """The figures of one run, counted from its trace records.

    ``agrees`` is True when the trace's counts equal the connection's own
    (``stats.transitions`` and ``stats.failures``).
    """

    records: tuple[Mapping[str, Any], ...]
    edges: Mapping[tuple[str, str, str], int]
    failures: Mapping[str, int]
    states_visited: tuple[str, ...]
    stats: Stats
    agrees: bool


@attrs.frozen
class DemoReport:
    """What :func:`run_demo` returns.

    ``messages_taken`` is how many messages the application's ``on_message``
    handler took (every message the connection delivered).
    """

    trace: Path
    summary: DemoSummary
    server: LwpServerStats
    events: tuple[DemoEvent, ...]
    messages_taken: int


def summarize(records: list[dict[str, Any]], stats: Stats) -> DemoSummary:
    """Count edges and failure classes in trace ``records``; compare with ``stats``."""
    edges = Counter((r["from"], r["to"], r["trigger"]) for r in records)
    edges_by_trigger = Counter(
        {(src, trigger, dest): n for (src, dest, trigger), n in edges.items()}
    )
    classes = stats.failures.keys() | Spec.default().errors.classes.keys()
    failures = Counter(
        r["reason"].partition(":")[0]
        for r in records
        if r["trigger"] in _FAILURE_TRIGGERS and r["reason"].partition(":")[0] in classes
    )
    visited = list(dict.fromkeys(state for r in records for state in (r["from"], r["to"])))
    agrees = dict(edges_by_trigger) == dict(stats.transitions) and dict(failures) == dict(
        stats.failures
    )
    return DemoSummary(
        records=tuple(records),
        edges=dict(edges_by_trigger),
        failures=dict(failures),
        states_visited=tuple(visited),
        stats=stats,
        agrees=agrees,
    )


async def run_demo(
    observer: DemoObserver,
    *,
    duration: float = DEFAULT_DURATION,
    seed: int = 1,
    trace: Path,
    environment: DemoEnvironment | None = None,
) -> DemoReport:
    """Run the story for about ``duration`` seconds in ``environment`` (default: a
    :class:`~fsm_live.demo.environments.SocketEnvironment`, which needs
    anyio's asyncio backend); the trace goes to ``trace`` (overwritten).  ``seed``
    seeds the client's jitter.

    Raises :class:`StoryStuck` when a step does not reach its outcome in time (as
    it is: never inside an exception group, even if stopping the environment
    failed too; that failure is logged), and ValueError for a ``duration`` below
    :data:`MIN_DURATION`.
    """
    if not MIN_DURATION <= duration < math.inf:
        raise ConfigError("duration", f"the demo needs a duration of at least {MIN_DURATION:g} s")
    # Synchronous on purpose (an empty write): waiting for a worker thread would let
    # a mock clock jump to the next deadline meanwhile.
    trace.write_text("", encoding="utf-8")  # noqa: ASYNC240
    story = _Story(observer, duration, seed, trace)
    if environment is None:
        environment = SocketEnvironment(seed=seed)
    stuck: StoryStuck | None = None
    try:
        async with environment as env:
            try:
                return await story.run(env)
            except StoryStuck as exc:
                stuck = exc  # raised below, once the environment has stopped
    except Exception:
        if stuck is None:
            raise
        logger.warning(
            "stopping the demo's environment after it got stuck failed too", exc_info=True
        )
    assert stuck is not None, "the story neither returned nor got stuck"
    raise stuck


class _Story:
    """The demo's client and its steps (one instance per run)."""

    def __init__(self, observer: DemoObserver, duration: float, seed: int, trace: Path) -> None:
        self.observer = observer
        self.duration = duration
        self.seed = seed
        self.trace = trace
        self.events: list[DemoEvent] = []
        self.started_at = 0.0
        self.sent = 0
        self.taken = 0

    # -- the run ---------------------------------------------------------------------------

    async def run(self, env: DemoEnvironment) -> DemoReport:
        self.env = env
        credentials = CookieCredentials(
            Secret(DEMO_COOKIES), token_source=env.fetch_token, escalation=self._relogin
        )
        self.credentials = credentials
        config = demo_config(self.duration)
        jitter = random.Random(self.seed).random
        # Shared with the second client of the outage steps: one endpoint, one answer.
        self.endpoint = new_endpoint(target_for(env.url), config, random=jitter)
        conn = LiveConnection(
            env.url,
            protocol="lwp",
            config=config,
            credentials=credentials,
            transport=env.transport,
            trace=self.trace,
            on_message=self._take,
            random=jitter,
            endpoint=self.endpoint,
        )
        self.conn = conn
        self.observer.attach(conn, self.duration)
        conn.on_transition(self.observer.transition)
        env.on_fault(self._server_fault)
        async with conn, AsyncExitStack() as stack:
            self.stack = stack
            self.started_at = conn.started_at
            for step in (
                self._clean_session,
                self._half_open,
                self._restart,
                self._unauthorized,
                self._terminal_close,
                self._account_refused,
                self._overloaded,
                self._network_down,
                self._network_back,
                self._finish,
            ):
                await step()
        stats = conn.stats()
        summary = summarize(read_trace(self.trace), stats)
        return DemoReport(self.trace, summary, env.server_stats(), tuple(self.events), self.taken)

    async def _take(self, message: object) -> None:
        """The application's on_message handler: take the message, count it."""
        self.taken += 1
        self.observer.messages_taken(self.taken)

    async def _relogin(self) -> bool:
        """The escalation hook: log in again (a fresh token over the network)."""
        try:
            await self.credentials.refresh_token()
        except TokenFetchFailed as exc:
            self._note(f"escalation: re-login failed ({exc})")
            return False
        return True

    # -- the steps -------------------------------------------------------------------------

    async def _clean_session(self) -> None:
        self._step(
            f"clean session: pushes of {ITEMS_PER_PUSH} items every "
            f"{PUSH_INTERVAL:g} s, some duplicated; a token refresh is due after "
            f"{self.conn.config.token_refresh_interval:g} s"
        )
        await self._until(self._up_name, self._up, 10)
        for _ in range(3):
            await self._send()
            await anyio.sleep(0.5)
        await self._until(
            "a token refresh applied by rotate",
            lambda s: _taken(s, "rotate") >= 1,
            self.conn.config.token_refresh_interval + 10,
        )
        await self._settle()

    async def _restart(self) -> None:
        await self._start_at(
            0.33, f"server restart: close 1012, then nothing listens for {RESTART_DOWNTIME:g} s"
        )
        await self._inject(Restart(RESTART_DOWNTIME))
        await self._until(
            "reconnected after the restart", lambda s: s.failures.get("planned", 0) >= 1, 10
        )
        await self._settle()

    async def _unauthorized(self) -> None:
        await self._start_at(
            0.39,
            "the link drops, and the server answers the next "
            "handshake 401: one credential refresh, one retry",
        )
        await self._inject(Reject(401, 1))
        await self._inject(Drop())
        await self._until(
            "a 401 answered by a refresh", lambda s: s.failures.get("auth", 0) >= 1, 10
        )
        await self._settle()

    async def _terminal_close(self) -> None:
        await self._start_at(
            0.45,
            f"terminal close 4500: {self._failed_name}, then the escalation (re-login) recovers",
        )
        await self._inject(CloseConnections(4500))
        await self._until("reset by the escalation", lambda s: _taken(s, "reset") >= 1, 10)
        await self._settle()

    async def _account_refused(self) -> None:
        config = self.conn.config
        await self._start_at(
            0.51,
            "the server refuses the account's next two registrations: one credential "
            f"refresh, then its credentials are refused: {self._failed_name}; the "
            "escalation (re-login) recovers",
        )
        reset = _taken(self.conn.stats(), "reset")
        await self._inject(RefuseRegistration(2))
        await self._inject(Drop())
        await self._until("reset by the escalation", lambda s: _taken(s, "reset") > reset, 10)
        # No settling here: the session must not become stable, so the escalation
        # that just ran still counts against max_escalations below.
        self._step(
            f"the server closes each new session of the account with {RETRY_CLOSE} (try "
            f"again) as it opens: after max_failures ({config.max_failures}) in a row it "
            f"gives up ({self._failed_name}); the escalation already ran since the last "
            f"stable session (max_escalations {config.max_escalations}), so it retries by "
            "itself after failed_retry_delay"
        )
        for _ in range(config.max_failures):
            await self._until(self._up_name, self._up, 15)
            await self._inject(CloseConnections(RETRY_CLOSE))
            await self._until("the session closed", lambda s: not self._up(s), 5)
        await self._until("give up", lambda s: _taken(s, "give_up") >= 1, 10)
        await self._until(
            "a retry by itself", lambda s: _taken(s, "recover") >= 1, FAILED_RETRY_DELAY + 10
        )
        await self._settle()

    async def _half_open(self) -> None:
        net = self.env.network_name
        await self._start_at(
            0.21,
            f"half-open link: the {net} swallows every byte both ways; "
            "only the heartbeat timeout can notice",
        )
        self._fault(f"{net}: black hole, both directions")
        lost = _taken(self.conn.stats(), "lost")
        await self.env.set_black_hole(True)
        await self._until(
            "lost by heartbeat timeout",
            lambda s: _taken(s, "lost") > lost,
            self.conn.config.heartbeat_timeout + 5,
        )
        self._fault(f"{net}: black hole lifted")
        await self.env.set_black_hole(False)
        await self._settle()

    async def _overloaded(self) -> None:
        config = self.conn.config
        await self._start_at(
            0.63,
            f"{SECOND} of the same server joins; then the server is overloaded: it answers "
            "every new handshake 503 and keeps the open sessions; the second client "
            f"reconnects (rotate), is refused endpoint_failures ({config.endpoint_failures}) "
            "times in a row, the endpoint is down, and it waits; then the demo's client's "
            "link drops: it waits for the endpoint too instead of failing on its own, and "
            "the two take turns probing it",
        )
        success, dialling = self.conn.spec.success_states, _states_with(self.conn.spec, task=DIAL)
        second = await self.stack.enter_async_context(self._second_client())
        for _ in range(OVERLOAD_ATTEMPTS):
            await self._settle_second()
            stats = self.conn.stats()
            waits, failed_probes = (
                _taken_from(stats, "wait", success),
                _taken_from(stats, "wait", dialling),
            )
            await self._inject(Reject(503, OVERLOAD_REJECTS))
            await second.rotate()
            await _bounded("the endpoint down", 15, _poll(second, lambda s: not self.endpoint.up))
            if self._up(self.conn.stats()):
                break
            # Its own token refresh (a rotate) made it dial into the overload just now.
            self._note("the demo's client dialled into the overload itself: once more")
            await self._end_overload()
            await self._settle()
        else:
            raise StoryStuck(
                f"the demo got stuck waiting for: {self._up_name} while the endpoint is down"
            )
        await self._inject(Drop())
        await self._until(
            "a wait for the endpoint from " + self._up_name,
            lambda s: _taken_from(s, "wait", success) > waits,
            10,
        )
        await self._until(
            "a probe of the demo's client while the endpoint is down",
            lambda s: _taken_from(s, "wait", dialling) > failed_probes,
            config.probe_interval * 4 + 10,
        )
        await self._end_overload()
        await self._settle()
        await self._settle_second()

    async def _end_overload(self) -> None:
        # A reject of none replaces the pending one: handshakes are answered again.
        self._fault("server: no longer overloaded (handshakes answered again)")
        await self.env.inject(Reject(503, 0))

    async def _network_down(self) -> None:
        config = self.conn.config
        await self._settle_second()
        await self._start_at(
            0.79,
            f"the network goes down: both links drop; {SECOND} retries first and is "
            f"refused: endpoint_failures ({config.endpoint_failures}) in a row, the "
            "endpoint is down, and the demo's client, still backing off, waits for it "
            f"instead of failing on its own: no {self._failed_name} for an outage; the two "
            f"take turns probing it every {config.probe_interval:g} s or so (jittered)",
        )
        stats = self.conn.stats()
        backing_off, dialling = (
            _states_with(self.conn.spec, timer=BACKOFF),
            _states_with(self.conn.spec, task=DIAL),
        )
        waits = _taken_from(stats, "wait", backing_off)
        failed_probes = _taken_from(stats, "wait", dialling)
        self._fault(f"{self.env.network_name}: down (open links dropped, new ones fail)")
        await self.env.set_down(True)
        await self._until(
            "a wait while backing off",
            lambda s: _taken_from(s, "wait", backing_off) > waits,
            10,
        )
        await self._until(
            "a probe while the endpoint is down",
            lambda s: _taken_from(s, "wait", dialling) > failed_probes,
            config.probe_interval * 4 + 10,
        )

    async def _network_back(self) -> None:
        await self._start_at(
            0.89, "the network is back: the next probe connects, and both reconnect by themselves"
        )
        self._fault(f"{self.env.network_name}: up")
        await self.env.set_down(False)
        await self._settle()
        await self._settle_second()
        self._step(f"{SECOND} closes")
        with anyio.fail_after(5):
            await self.second.close()

    @asynccontextmanager
    async def _second_client(self) -> AsyncIterator[LiveConnection]:
        """Another account on the same server, dialling the same endpoint; its
        transitions are shown as notes."""
        credentials = CookieCredentials(Secret(SECOND_COOKIES), token_source=self.env.fetch_token)
        second = LiveConnection(
            self.env.url,
            protocol="lwp",
            config=SECOND_CONFIG,
            credentials=credentials,
            transport=self.env.transport,
            on_message=_discard,  # it takes its messages too: reading never pauses
            random=random.Random(self.seed + 1).random,
            endpoint=self.endpoint,
        )
        second.on_transition(
            lambda r: self._note(f"{SECOND}: {r.source} -> {r.dest} [{r.trigger}]")
        )
        self.second = second
        async with second:
            yield second

    async def _settle_second(self) -> None:
        """Wait until the second client is up and a heartbeat of its was acked."""
        second = self.second
        await _bounded(
            f"{SECOND} {self._up_name}",
            15,
            _poll(second, lambda s: s.state in second.spec.success_states),
        )
        acked = second.stats().heartbeats_acked
        await _bounded(
            f"a heartbeat ack of {SECOND}",
            10,
            _poll(
                second,
                lambda s: s.state in second.spec.success_states and s.heartbeats_acked > acked,
            ),
        )

    async def _finish(self) -> None:
        await self._wait_until(self.duration)
        self._step("the application closes the connection")
        with anyio.fail_after(5):
            await self.conn.close()

    # -- helpers ---------------------------------------------------------------------------

    def _now(self) -> float:
        return anyio.current_time() - self.started_at

    def _emit(self, kind: str, text: str) -> None:
        event = DemoEvent(round(self._now(), 6), kind, text)
        self.events.append(event)
        self.observer.event(event)

    def _step(self, text: str) -> None:
        self._emit("step", text)

    def _fault(self, text: str) -> None:
        self._emit("fault", text)

    def _note(self, text: str) -> None:
        self._emit("note", text)

    def _server_fault(self, event: FaultEvent) -> None:
        # Injected faults are announced by _inject; only report the end of timed ones.
        if event.ended:
            self._fault(f"server: {event}")

    async def _inject(self, fault: Fault) -> None:
        self._fault(f"server: {fault}")
        await self.env.inject(fault)

    async def _send(self) -> None:
        self.sent += 1
        await self.conn.send(
            {
                "lwp": "/r/MessageSend/sendByReceiverScope",
                "body": [{"text": f"hello #{self.sent} from the demo"}],
            }
        )

    async def _wait_until(self, at: float) -> None:
        await anyio.sleep_until(self.started_at + at)

    async def _start_at(self, share: float, text: str) -> None:
        await self._wait_until(share * self.duration)
        self._note(f"the application has taken {self.taken} messages so far")
        self._step(text)

    def _up(self, stats: Stats) -> bool:
        """Whether the connection is up: in a ``success`` state of the spec."""
        return stats.state in self.conn.spec.success_states

    @property
    def _up_name(self) -> str:
        return " or ".join(sorted(self.conn.spec.success_states))

    @property
    def _failed_name(self) -> str:
        return " or ".join(sorted(self.conn.spec.failed_states))

    async def _until(self, what: str, done: Callable[[Stats], bool], limit: float) -> None:
        """Wait until ``done(stats)``; raise StoryStuck after ``limit`` seconds."""
        await _bounded(what, limit, _poll(self.conn, done))

    async def _settle(self) -> None:
        """Wait until up (a ``success`` state of the spec) and stable (a heartbeat acked
        on this link), then send."""
        await self._until(self._up_name, self._up, 15)
        acked = self.conn.stats().heartbeats_acked
        await self._until(
            "a heartbeat ack", lambda s: self._up(s) and s.heartbeats_acked > acked, 10
        )
        await self._send()


def _taken(stats: Stats, trigger: str) -> int:
    """How often edges of ``trigger`` were taken."""
    return sum(n for (_, name, _), n in stats.transitions.items() if name == trigger)


def _taken_from(stats: Stats, trigger: str, sources: Collection[str]) -> int:
    """How often edges of ``trigger`` were taken from one of ``sources``."""
    return sum(
        n
        for (source, name, _), n in stats.transitions.items()
        if name == trigger and source in sources
    )


def _states_with(spec: Spec, *, timer: str = "", task: str = "") -> frozenset[str]:
    """The states that keep ``timer`` or run ``task`` (roles by what a state does)."""
    return frozenset(
        name
        for name, state in spec.states.items()
        if any(t.name == timer for t in state.timers) or task in state.tasks
    )


async def _discard(message: object) -> None:
    """The second client's on_message handler: take the message."""


async def _poll(conn: LiveConnection, done: Callable[[Stats], bool]) -> None:
    # Transitions wake us at once; counters (acks, refreshes) are polled.
    while not done(conn.stats()):
        with anyio.move_on_after(_POLL):
            await conn.wait_changed()


async def _bounded(what: str, limit: float, work: Awaitable[None]) -> None:
    try:
        with anyio.fail_after(limit):
            await work
    except TimeoutError:
        raise StoryStuck(f"the demo got stuck waiting for: {what} ({limit:g} s)") from None
