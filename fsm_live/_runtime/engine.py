"""The engine: one object per connection that owns its links and reacts to events.

An engine is synchronous.  Everything that happens to a connection reaches it
as a call on the event loop's thread: bytes received on a link, the end of a
link, its timer, an application call (send, close, rotate, reset), a job's
report (a dial failed, an escalation finished).  Each call is one *tick*:

1. the bytes go to websockets' Sans-I/O ``ClientProtocol`` of that link, and
   what it has to send goes out at once (``data_to_send()`` after every call);
2. the events it parsed are handled in order: the handshake's response, the
   registration's reply, messages (decoded, de-duplicated, delivered to the
   inbox), pongs and heartbeat acks, a close frame;
3. what the lifecycle must know becomes a core event
   (:mod:`fsm_live.core.events`), fed to the :class:`~fsm_live.core.lifecycle.Lifecycle`
   one at a time; its effects are carried out in order before the next event
   (start or cancel a task of the spec, report a transition);
4. backpressure is checked (the inbox is full: stop reading; it has room again:
   read), and the timer is armed for the earliest deadline.

Order and liveness follow from there being one engine per connection that sees
every byte and every frame in order (docs/architecture.md, rules 7 and 8):
every message received before a close frame is in the inbox before the close
is acted on; any byte received, and outbound bytes that the peer takes while our
write buffer is not empty, prove the link alive; while reading is paused because
the application is behind, the heartbeat timeout is suspended.

The spec's tasks keep their meaning.  Periodic ones (``heartbeat``,
``token_refresh``, ``cookie_refresh``, ``cleanup``) are deadlines of the engine;
``reader`` and ``flush`` say whether messages go to the application and whether
``send()`` writes at once; ``dial``, ``escalation`` and the runs of a refresh
await, so they are jobs (:mod:`fsm_live._runtime.jobs`).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import CLOSED, OPEN
from websockets.uri import WebSocketURI, parse_uri

from fsm_live._runtime.dedup import Deduplicator
from fsm_live._runtime.inbox import Inbox
from fsm_live._runtime.jobs import Job, Jobs
from fsm_live._runtime.links import LinkIO, abort_with_reset, unacknowledged
from fsm_live._runtime.outbox import Outbox
from fsm_live._runtime.stats import AckObserver, Counters
from fsm_live._runtime.timers import Timer
from fsm_live.config import Config
from fsm_live.core.effects import CancelTask, Effect, Emit, StartTask, TransitionRecord
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
from fsm_live.core.lifecycle import Lifecycle
from fsm_live.credentials import CredentialsProvider, Secret, provider_errors
from fsm_live.errors import SpecError, TransitionRefused, TransportError
from fsm_live.protocols.base import ProtocolAdapter, Registration, SimpleDecoder
from fsm_live.transport import errors
from fsm_live.transport.base import Message
from fsm_live.transport.redaction import redacting_logger
from fsm_live.transport.url import safe_url

__all__ = (
    "TASK_STARTS",
    "CookieRefresher",
    "Engine",
    "Link",
    "LinkOpener",
    "TaskContext",
    "TokenRefresher",
)

logger = logging.getLogger("fsm_live")

_WEBSOCKETS_LOGGER = redacting_logger("websockets.client")
#: App-level heartbeats awaiting their ack; older ones are forgotten.
_PENDING_HEARTBEATS: Final = 16
#: Close codes the client sends when it leaves a link (RFC 6455 section 7.4.1).
_NORMAL_CLOSURE: Final = 1000
_INTERNAL_ERROR: Final = 1011
_INVALID_DATA: Final = 1007
#: Seconds within which the engine's own deadlines (heartbeats, periodic tasks) are
#: taken as due at a wake-up, rather than waking again for them.
_COALESCE: Final = 0.001
#: Unacknowledged outbound bytes from which their progress counts as the link's life.
_OUTBOUND_BACKLOG: Final = 16 * 1024


@runtime_checkable
class TokenRefresher(Protocol):
    """A credentials provider that can refresh its access token."""

    async def refresh_token(self) -> bool:
        """Refresh; True if the token changed (the connection rotates to apply it)."""
        ...


@runtime_checkable
class CookieRefresher(Protocol):
    """A credentials provider that can refresh its cookies."""

    async def refresh_cookies(self) -> bool:
        """Refresh; True if the cookies changed (used at the next handshake)."""
        ...


#: Opens the byte link for a :class:`Link` (TCP, TLS, a proxy tunnel, memory);
#: calls its ``link_made`` once open.  Raises TransportError.
LinkOpener = Callable[["Link"], Awaitable[None]]


class _Phase:
    """Where a link is in its life (plain ints: compared on the hot path)."""

    DIALING = 0  # the byte link is being opened
    HANDSHAKE = 1  # the WebSocket opening handshake
    REGISTERING = 2  # the protocol's registration (lwp's /reg)
    OPEN = 3  # registered: the connection is CONNECTED on it
    CLOSING = 4  # detached from the lifecycle, closing (bounded by close_timeout)
    CLOSED = 5


class Link:
    """One WebSocket link: a byte link, websockets' ``ClientProtocol`` over it, and
    what the engine tracks of it.  It receives the byte link's events
    (:class:`~fsm_live._runtime.links.LinkEvents`) and hands them to its engine."""

    __slots__ = (
        "_engine",
        "close_deadline",
        "early",
        "flushed",
        "fragments",
        "fragments_text",
        "headers",
        "io",
        "last_activity",
        "outbound",
        "phase",
        "ping",
        "pings",
        "protocol",
        "registration",
        "written",
    )

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.phase = _Phase.DIALING
        self.io: LinkIO | None = None
        self.protocol: ClientProtocol | None = None
        self.headers: Mapping[str, str] = {}
        self.registration: Registration | None = None
        self.early: list[Message] = []  # frames before the registration's reply
        self.fragments: list[bytes] = []  # a fragmented message so far
        self.fragments_text = False  # ... and whether it is text
        self.last_activity = -math.inf
        self.ping: tuple[bytes, float] | None = None  # the ping in flight, sent at
        self.pings = 0
        self.written = 0  # bytes handed to io.write
        self.flushed = 0  # bytes known to have left the write buffer
        self.outbound = False  # the write buffer was not empty at the last check
        self.close_deadline = math.inf

    def __repr__(self) -> str:
        return f"<Link phase={self.phase}>"

    # -- LinkEvents ----------------------------------------------------------------------

    def link_made(self, io: LinkIO) -> None:
        self._engine._link_made(self, io)

    def link_data(self, data: bytes) -> None:
        self._engine._link_data(self, data)

    def link_eof(self) -> None:
        self._engine._link_eof(self)

    def link_lost(self, exc: BaseException | None) -> None:
        self._engine._link_lost(self, exc)

    def writing_paused(self, paused: bool) -> None:
        self._engine._writing_paused(self, paused)


class Engine:
    """The runtime of one connection; see the module docstring.

    ``open_link`` opens a link's byte link; ``on_transition(record)`` is called
    after every transition, once its effects are carried out; ``on_change()``
    after every tick that changed something an application may wait for.
    """

    __slots__ = (
        "_can_refresh_cookies",
        "_can_refresh_token",
        "_decode_simple",
        "_dedup",
        "_delivering",
        "_events",
        "_extensions",
        "_feeding",
        "_flushing",
        "_heartbeat_at",
        "_jobs",
        "_on_change",
        "_on_transition",
        "_open_link",
        "_paused_at",
        "_pending_acks",
        "_periodic",
        "_rearm",
        "_token_refresh_failed",
        "_warned_generation",
        "_write_blocked",
        "adapter",
        "clock",
        "closing",
        "config",
        "counters",
        "crash",
        "credentials",
        "inbox",
        "jobs",
        "lifecycle",
        "link",
        "on_heartbeat_ack",
        "outbox",
        "owned",
        "timer",
        "url",
        "user_agent",
        "wsuri",
    )

    def __init__(
        self,
        *,
        url: str,
        lifecycle: Lifecycle,
        adapter: ProtocolAdapter,
        config: Config,
        credentials: CredentialsProvider | None,
        inbox: Inbox,
        outbox: Outbox,
        counters: Counters,
        jobs: Jobs,
        clock: Callable[[], float],
        open_link: LinkOpener,
        on_transition: Callable[[TransitionRecord], None],
        on_change: Callable[[], None],
        user_agent: str | None = "fsm_live",
    ) -> None:
        self.url = url
        self.wsuri: WebSocketURI = parse_uri(url)
        self.lifecycle = lifecycle
        self.adapter = adapter
        self.config = config
        self.credentials = credentials
        self.inbox = inbox
        self.outbox = outbox
        self.counters = counters
        #: Called with ``(at, rtt)`` after every heartbeat ack when not None (a trace
        #: writing stats records, a metrics collector): only an ``is None`` check otherwise.
        self.on_heartbeat_ack: AckObserver | None = None
        self.jobs = jobs
        self.clock = clock
        self.user_agent = user_agent
        self._open_link = open_link
        self._on_transition = on_transition
        self._on_change = on_change
        self._dedup: Deduplicator | None = None  # created by the first message id
        # What the adapter and the provider can do (checked once: a runtime protocol
        # check is slow).
        self._decode_simple = adapter.decode_simple if isinstance(adapter, SimpleDecoder) else None
        self._can_refresh_token = isinstance(credentials, TokenRefresher)
        self._can_refresh_cookies = isinstance(credentials, CookieRefresher)
        self.timer: Timer | None = None
        #: The link the lifecycle is on (dialling, registering or open), if any.
        self.link: Link | None = None
        #: Links left by the lifecycle that are still closing.
        self.closing: list[Link] = []
        # Core events waiting for the one being handled (a list: mostly empty, and a
        # deque is 760 bytes even then).
        self._events: list[Event] = []
        self._feeding = False
        self._jobs: dict[str, Job] = {}  # the spec tasks that run as jobs, by name
        self._delivering = False  # the reader task is active
        self._flushing = False  # the flush task is active: send() writes at once
        self._heartbeat_at = math.inf
        self._pending_acks: OrderedDict[str, float] | None = None  # app heartbeats only
        self._periodic: dict[str, float] = {}  # periodic task -> next run
        self._token_refresh_failed = False
        self._paused_at: float | None = None  # reading paused since
        self._warned_generation = -1
        self._write_blocked = False
        self._rearm = False  # a deadline may have moved earlier: arm the timer again
        self._extensions = enable_client_permessage_deflate(None) if config.compression else None
        #: The exception that made the connection close (a callback's, a crashed job's).
        self.crash: BaseException | None = None
        #: Asked before each inbound message is handled and before each write; False:
        #: the connection aborts (:meth:`abort`) instead (a cluster's ownership check).
        self.owned: Callable[[], bool] | None = None

    # == application calls ================================================================

    def start(self) -> None:
        """DISCONNECTED -> the spec's first transition (``start``)."""
        self._feed(Start(self.clock()))
        self._settle()

    def close(self, reason: str = "closed by the application") -> None:
        """Close from any state (a no-op in a final state); links close in the background."""
        self._feed(Close(self.clock(), reason))
        self._settle()

    def rotate(self, reason: str) -> None:
        """Ask for a planned reconnect (refused by the core unless connected)."""
        self._feed(Rotate(self.clock(), self.lifecycle.generation, reason))
        self._settle()

    def reset(self, reason: str) -> None:
        """Ask a failed connection to retry now (refused by the core unless failed)."""
        self._feed(Reset(self.clock(), reason))
        self._settle()

    def send(self, frame: Message) -> None:
        """Send ``frame`` now if the connection is up, else buffer it (in order).

        Raises :class:`~fsm_live.errors.BufferFull` when the buffer is at its bound.
        """
        link = self.link
        if self._flushing and link is not None and link.phase == _Phase.OPEN:
            self._send_frame(link, frame)
            self.counters.messages_out += 1
        else:
            self.outbox.put(frame)

    @property
    def writing_paused(self) -> bool:
        """True while the current link's write buffer is above its high mark."""
        return self._write_blocked and self.link is not None

    @property
    def idle(self) -> bool:
        """True once nothing is open or closing (after a close: the engine is done)."""
        return self.link is None and not self.closing

    def cancel_jobs(self) -> None:
        """Cancel the spec tasks that run as jobs (the connection is done)."""
        for job in self._jobs.values():
            job.cancel()
        self._jobs.clear()

    def message_taken(self) -> None:
        """The application took a message from the inbox: read again if there is room."""
        if self._paused_at is not None and self.inbox.has_room:
            self._resume_reading()
            self._settle()

    def job_crashed(self, job: Job, exc: Exception) -> None:
        """A job let an exception out (a bug): its link fails over, as a crash."""
        if job.generation == self.lifecycle.generation:
            failure = self.lifecycle.machine.classifier.classify_exception(exc)
            self._feed(LinkFailed(self.clock(), job.generation, failure))
            self._settle()

    def abort(self, reason: str) -> None:
        """Close now, abortively: every link is reset (``SO_LINGER`` 0, nothing queued is
        sent or retransmitted, no close frame), then the lifecycle closes."""
        for link in [self.link, *self.closing]:
            if link is not None:
                link.phase = _Phase.CLOSED
                if link.io is not None:
                    abort_with_reset(link.io)
        self.closing.clear()
        self._feed(Close(self.clock(), reason))
        self._settle()

    def _disowned(self) -> bool:
        """True (and the connection aborted) if ``owned`` says it may no longer act."""
        owned = self.owned
        if owned is None or owned():
            return False
        if self.link is not None or self.closing or not self.lifecycle.is_final:
            self.abort("no longer owned by this worker")
        return True

    def crashed(self, exc: BaseException) -> None:
        """Application code run by the engine raised: close the connection, keep ``exc``."""
        if self.crash is None:
            self.crash = exc
            self._feed(Close(self.clock(), f"{type(exc).__name__} raised in a callback"))

    # == the timer ========================================================================

    def on_timer(self, due: float = -math.inf) -> None:
        """The timer armed for ``due`` fired: close, tick and send what is due now."""
        now = max(self.clock(), due)
        self._rearm = True
        for link in [link for link in self.closing if link.close_deadline <= now]:
            self._abort(link)  # the peer did not finish closing in time
        # The engine's own deadlines a hair away are due now: one wake-up, not two.
        horizon = now + _COALESCE
        current = self.link
        if current is not None and current.phase == _Phase.OPEN and self._heartbeat_at <= horizon:
            self._heartbeat(current, now)
        self._hand_activity()
        core_due = self.lifecycle.next_deadline()
        if core_due is not None and core_due <= now:
            self._feed(Tick(now))
        periodic = self._periodic
        if periodic and min(periodic.values()) <= horizon:
            for name, periodic_due in list(periodic.items()):
                if periodic_due <= horizon:
                    self._run_periodic(name, now)
        if self._paused_at is not None:
            self._warn_paused(now)
        self._settle()

    def _next_deadline(self) -> float:
        deadline = self.lifecycle.next_deadline()
        earliest = math.inf if deadline is None else deadline
        earliest = min(earliest, self._heartbeat_at, *self._periodic.values())
        for link in self.closing:
            earliest = min(earliest, link.close_deadline)
        if self._paused_at is not None and self._warned_generation != self.lifecycle.generation:
            earliest = min(earliest, self._paused_at + self.config.heartbeat_timeout)
        return earliest

    def _settle(self) -> None:
        """After every tick: arm the timer if a deadline may have moved earlier; tell
        the application something changed."""
        if self._rearm and self.timer is not None:
            self._rearm = False
            self.timer.arm(self._next_deadline())
        self._on_change()

    # == core events and their effects ====================================================

    def _feed(self, event: Event) -> None:
        """Hand ``event`` to the lifecycle; carry out its effects before the next event.

        Events raised while effects are carried out (a job reporting at once, a
        callback closing the connection) wait their turn: one at a time, in order.
        """
        self._events.append(event)
        self._rearm = True
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._events:
                event = self._events.pop(0)
                try:
                    effects = self.lifecycle.handle(event)
                except TransitionRefused as refused:
                    # An event its state has no edge for (say, a rotate that lost
                    # the race with a close): report, go on.
                    logger.debug("dropped %s: %s", type(event).__name__, refused)
                    continue
                self._execute(effects)
        finally:
            self._feeding = False

    def _execute(self, effects: list[Effect]) -> None:
        """Carry out a step's effects in order.  A transition whose destination is not
        a success state leaves the current link first (before the new state's tasks
        start: a ``retry`` dials a new link, a ``rotate`` closes the old one)."""
        record = effects[-1].record if effects and isinstance(effects[-1], Emit) else None
        if record is not None and not self.lifecycle.machine.states[record.dest].success:
            self._release_link(_INTERNAL_ERROR if record.error_class else _NORMAL_CLOSURE)
        for effect in effects:
            if isinstance(effect, StartTask):
                self._start_task(effect)
            elif isinstance(effect, CancelTask):
                self._cancel_task(effect.task)
            elif isinstance(effect, Emit):
                self._emitted(effect.record)
            # ScheduleTimer / CancelTimer: next_deadline() already reflects them.

    def _emitted(self, record: TransitionRecord) -> None:
        try:
            self._on_transition(record)
        except Exception as exc:
            self.crashed(exc)

    def _start_task(self, effect: StartTask) -> None:
        start = TASK_STARTS.get(effect.task)
        if start is not None:
            start(self, effect, self.clock())
            return
        registry = self.lifecycle.machine.registry
        if registry is None or ("task", effect.task) not in registry:
            raise SpecError(
                [f"{self.lifecycle.machine.spec.source}: no task body for {effect.task!r}"]
            )
        func = registry.lookup("task", effect.task)
        self._start_job(
            effect.task,
            effect.generation,
            self._run_user_task,
            func,
            TaskContext(self, effect.task, effect.generation),
        )

    async def _run_user_task(
        self, func: Callable[[TaskContext], Awaitable[None]], context: TaskContext
    ) -> None:
        """A task of the spec's own: ``await func(context)``; if it raises, the
        connection closes and keeps the exception (as for a raising callback)."""
        try:
            await func(context)
        except Exception as exc:
            self.crashed(exc)
            self._settle()
        finally:
            if (
                self._jobs.get(context.task) is not None
                and self._jobs[context.task].generation == context.generation
            ):
                self._jobs.pop(context.task, None)

    # The packaged lifecycle's tasks (TASK_STARTS, below the class, maps their names).

    def _start_dial(self, effect: StartTask, now: float) -> None:
        self.link = Link(self)
        self._start_job(
            "dial", effect.generation, self._dial, self.link, effect.refresh_credentials
        )

    def _start_reader(self, effect: StartTask, now: float) -> None:
        self._delivering = True
        current = self.link
        if current is not None:
            early, current.early = current.early, []
            for frame in early:
                self._on_message(current, frame, now)

    def _start_heartbeat(self, effect: StartTask, now: float) -> None:
        self._heartbeat_at = now + self.config.heartbeat_interval
        self._rearm = True

    def _start_token_refresh(self, effect: StartTask, now: float) -> None:
        if self._can_refresh_token:
            self._periodic["token_refresh"] = now + self._token_refresh_delay()

    def _start_cookie_refresh(self, effect: StartTask, now: float) -> None:
        if self._can_refresh_cookies:
            self._periodic["cookie_refresh"] = now + self.config.cookie_refresh_interval

    def _start_cleanup(self, effect: StartTask, now: float) -> None:
        self._periodic["cleanup"] = now + self.config.cleanup_interval

    def _start_flush(self, effect: StartTask, now: float) -> None:
        self._flushing = True
        self._flush()

    def _start_escalation_task(self, effect: StartTask, now: float) -> None:
        self._start_escalation(effect.generation, effect.may_escalate)

    def _cancel_task(self, name: str) -> None:
        job = self._jobs.pop(name, None)
        if job is not None:
            job.cancel()
        if name == "reader":
            self._delivering = False
        elif name == "heartbeat":
            self._heartbeat_at = math.inf
        elif name == "flush":
            self._flushing = False
        self._periodic.pop(name, None)

    def _start_job(
        self, name: str, generation: int, work: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        job = self.jobs.start(name, work, *args)
        job.generation = generation
        self._jobs[name] = job

    # == the link's life ==================================================================

    async def _dial(self, link: Link, refresh_credentials: bool) -> None:
        """Credentials, then the byte link; the rest happens in the link's callbacks."""
        try:
            link.headers = await self._handshake_headers(refresh_credentials)
            with provider_errors():
                link.registration = await self.adapter.prepare(self.credentials)
            await self._open_link(link)
        except TransportError as error:
            self._link_failed(link, error)
            self._settle()

    async def _handshake_headers(self, refresh: bool) -> dict[str, str]:
        """The provider's headers, refreshed first if ``refresh`` (after an auth failure)."""
        if self.credentials is None:
            return {}
        with provider_errors():
            if refresh:
                await self.credentials.refresh()
            secrets_: Mapping[str, Any] = await self.credentials.handshake_headers()
        return {name: _reveal(value) for name, value in secrets_.items()}

    def _link_made(self, link: Link, io: LinkIO) -> None:
        link.io = io
        if link is not self.link:  # dialled for a state that was left meanwhile
            io.abort()
            return
        protocol = link.protocol = ClientProtocol(
            self.wsuri,
            extensions=self._extensions,
            max_size=self.config.max_size,
            logger=_WEBSOCKETS_LOGGER,
        )
        request = protocol.connect()
        for name, value in link.headers.items():
            request.headers[name] = value
        if self.user_agent is not None and "User-Agent" not in request.headers:
            request.headers["User-Agent"] = self.user_agent
        protocol.send_request(request)
        link.phase = _Phase.HANDSHAKE
        link.last_activity = self.clock()
        self._write_out(link)
        self._settle()

    def _link_data(self, link: Link, data: bytes) -> None:
        protocol = link.protocol
        if protocol is None:
            return
        now = self.clock()
        link.last_activity = now
        protocol.receive_data(data)
        self._write_out(link)
        events = protocol.events_received()
        if link is self.link:
            for event in events:
                if link is not self.link:
                    break  # the lifecycle left it (a close frame, a refusal)
                if isinstance(event, Frame):
                    self._on_frame(link, event, now)
                elif isinstance(event, Response):
                    self._on_response(link, event, now)
            self._check_given_up(link, protocol)
        if protocol.close_expected() and link.close_deadline == math.inf:
            link.close_deadline = now + self.config.close_timeout
            self._rearm = True
        self._check_backpressure(now)
        self._settle()

    def _check_given_up(self, link: Link, protocol: ClientProtocol) -> None:
        """websockets gave up on ``link`` by itself: the lifecycle learns now, not when
        the peer closes the TCP connection (which a peer that reads nothing never does).

        An answer to the handshake it cannot parse leaves no event, only
        ``handshake_exc``; an open link it failed (1009 message too big, 1002 protocol
        error) has its close frame sent and reads nothing more (``parser_exc``).
        """
        if link is not self.link:
            return
        if link.phase == _Phase.HANDSHAKE and protocol.handshake_exc is not None:
            self._link_failed(link, errors.translate(protocol.handshake_exc))
        elif link.phase != _Phase.HANDSHAKE and protocol.parser_exc is not None:
            sent = protocol.close_sent
            self._link_failed(
                link, errors.closed(sent.code if sent is not None else errors.ABNORMAL_CLOSURE)
            )

    def _link_eof(self, link: Link) -> None:
        protocol = link.protocol
        if protocol is not None:
            protocol.receive_eof()
            self._write_out(link)
        if link is self.link:
            self._link_failed(link, self._ended(link))
        self._settle()

    def _link_lost(self, link: Link, exc: BaseException | None) -> None:
        if link.protocol is not None:
            link.protocol.receive_eof()  # idempotent: the protocol ends CLOSED
        if link is self.link:
            if exc is None:
                error = self._ended(link)
            elif link.phase in (_Phase.DIALING, _Phase.HANDSHAKE):
                error = errors.translate(exc)  # a connect that failed: its kind
            else:  # an open link that broke: no close frame (RFC 6455 7.1.5)
                error = errors.closed(errors.ABNORMAL_CLOSURE, errors.translate(exc).reason)
            self._link_failed(link, error)
        link.phase = _Phase.CLOSED
        if link in self.closing:
            self.closing.remove(link)
        self._settle()

    def _writing_paused(self, link: Link, paused: bool) -> None:
        if link is self.link:
            self._write_blocked = paused
            self._settle()

    def _ended(self, link: Link) -> TransportError:
        """What the end of ``link``'s stream means: the handshake cut short, or a close."""
        protocol = link.protocol
        if protocol is None or link.phase == _Phase.HANDSHAKE:
            return errors.failed("eof")
        if protocol.state is CLOSED:
            return errors.closed(errors.close_code_of(protocol.close_exc))
        return errors.closed(errors.ABNORMAL_CLOSURE)

    def _link_failed(self, link: Link, error: TransportError) -> None:
        """``link`` (the current one) failed: tell the lifecycle, which leaves it."""
        if link is not self.link:
            return
        failure = self.lifecycle.machine.classifier.classify_error(error)
        self.counters.last_error = str(failure)
        self._feed(LinkFailed(self.clock(), self.lifecycle.generation, failure))
        if self.link is link:  # a state the failure did not leave (none, in the spec)
            self._release_link(_INTERNAL_ERROR)

    def _release_link(self, code: int) -> None:
        """The lifecycle left the current link: close it, within ``close_timeout``."""
        link, self.link = self.link, None
        self._write_blocked = False
        self._paused_at = None
        if link is None:
            return
        job = self._jobs.pop("dial", None)
        if job is not None:
            job.cancel()
        protocol, io = link.protocol, link.io
        if io is None or protocol is None or link.phase in (_Phase.HANDSHAKE, _Phase.CLOSED):
            if io is not None:
                io.abort()  # nothing to close cleanly (yet, or any more)
            return
        link.phase = _Phase.CLOSING
        if protocol.state is OPEN:
            protocol.send_close(code)
            self._write_out(link)
        if link.close_deadline == math.inf:
            link.close_deadline = self.clock() + self.config.close_timeout
        self._rearm = True
        io.resume_reading()  # read the peer's close frame even if the app is behind
        self.closing.append(link)

    def _abort(self, link: Link) -> None:
        """Close ``link`` now: its peer did not close in time."""
        link.close_deadline = math.inf
        if link in self.closing:
            self.closing.remove(link)
        if link.io is not None:
            link.io.abort()

    def _write_out(self, link: Link) -> None:
        """Send what the protocol has for the network (after every call into it)."""
        protocol, io = link.protocol, link.io
        if protocol is None or io is None or self._disowned():
            return
        for data in protocol.data_to_send():
            if data:
                io.write(data)
                link.written += len(data)
            elif io.can_write_eof():
                io.write_eof()
            else:
                io.close()
        if protocol.state is CLOSED and link.phase == _Phase.CLOSING:
            io.close()

    # == inbound ==========================================================================

    def _on_response(self, link: Link, response: Response, now: float) -> None:
        protocol = link.protocol
        assert protocol is not None
        exc = protocol.handshake_exc
        if exc is not None:
            self._link_failed(link, errors.translate(exc))
            return
        link.phase = _Phase.REGISTERING
        registration = link.registration
        if registration is None:
            self._registered(link, now)
            return
        for frame in registration.request():
            self._send_frame(link, frame)

    def _registered(self, link: Link, now: float) -> None:
        link.phase = _Phase.OPEN
        link.last_activity = now
        self._feed(Opened(now, self.lifecycle.generation))

    def _on_frame(self, link: Link, frame: Frame, now: float) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            message = self._assemble(link, frame)
            if message is None:
                return
            if link.phase == _Phase.OPEN:
                if self._delivering:
                    self._on_message(link, message, now)
                else:
                    link.early.append(message)
            elif link.phase == _Phase.REGISTERING:
                self._on_registration(link, message, now)
        elif opcode is Opcode.PONG:
            ping = link.ping
            if ping is not None and frame.data == ping[0]:
                link.ping = None
                self._acked(now, now - ping[1])
        elif opcode is Opcode.CLOSE:
            protocol = link.protocol
            assert protocol is not None
            code = protocol.close_rcvd.code if protocol.close_rcvd is not None else 1005
            self._link_failed(link, errors.closed(code))
        # PING: the protocol answered it already.

    def _assemble(self, link: Link, frame: Frame) -> Message | None:
        """The whole message once its last fragment arrived (text decoded), else None.

        websockets' protocol checks the fragments' order and the total size
        (``max_size``); text is decoded here, and invalid UTF-8 fails the link
        with 1007 (RFC 6455 section 8.1).
        """
        fragments = link.fragments
        if not frame.fin:
            if not fragments:
                link.fragments_text = frame.opcode is Opcode.TEXT
            fragments.append(bytes(frame.data))
            return None
        if fragments:
            fragments.append(bytes(frame.data))
            data = b"".join(fragments)
            fragments.clear()
            text = link.fragments_text
        else:
            data = bytes(frame.data)
            text = frame.opcode is Opcode.TEXT
        if not text:
            return data
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            protocol = link.protocol
            assert protocol is not None
            protocol.fail(_INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self._write_out(link)
            self._link_failed(link, errors.closed(_INVALID_DATA))
            return None

    def _on_registration(self, link: Link, frame: Message, now: float) -> None:
        registration = link.registration
        assert registration is not None
        try:
            then = registration.reply(frame)
        except TransportError as error:
            self._link_failed(link, error)
            return
        if then is None:
            link.early.append(frame)  # a push before the reply: delivered once connected
            return
        for reply in then:
            self._send_frame(link, reply)
        self._registered(link, now)

    def _on_message(self, link: Link, frame: Message, now: float) -> None:
        """Everything one inbound frame means, item by item, in order."""
        if self._disowned():
            return
        adapter = self.adapter
        decode_simple = self._decode_simple
        simple = None if decode_simple is None else decode_simple(frame)
        if simple is not None:
            self._deliver(simple[0], simple[1], now)
            return
        for item in adapter.decode(frame):
            if item.heartbeat_ack is not None:
                pending = self._pending_acks
                sent_at = None if pending is None else pending.pop(item.heartbeat_ack, None)
                if sent_at is not None:  # an ack of nothing we sent is not an ack
                    self._acked(now, now - sent_at)
            if item.reply is not None:
                self._send_frame(link, item.reply)
            if item.message is not None:
                self._deliver(item.message, item.message_id, now)

    def _deliver(self, message: Any, message_id: Hashable | None, now: float) -> None:
        counters = self.counters
        if message_id is not None and self.dedup.seen(message_id, now):
            counters.duplicates_dropped += 1
            return
        counters.messages_in += 1
        if self.lifecycle.awaits_proof:
            self._feed(MessageReceived(now, self.lifecycle.generation))
        self.inbox.put(message)

    def _acked(self, now: float, rtt: float) -> None:
        """A heartbeat's ack: the core hears of it at once (once per interval), so its
        heartbeat deadline stays a whole interval past the next heartbeat and wakes
        no one while the link is healthy; other frames are handed over lazily."""
        counters = self.counters
        counters.heartbeats_acked += 1
        counters.heartbeat_rtt = rtt
        observer = self.on_heartbeat_ack
        if observer is not None:  # a trace or a metrics collector watches
            observer(now, rtt)
        lifecycle = self.lifecycle
        if lifecycle.awaits_proof:
            self._feed(HeartbeatAcked(now, lifecycle.generation, rtt))
        else:
            self._note_activity(now)

    def _note_activity(self, at: float) -> None:
        """Tell the core the link showed life at ``at``.  Directly, not through
        :meth:`_feed`: it has no effects and only moves a deadline later."""
        lifecycle = self.lifecycle
        lifecycle.handle(Inbound(at, lifecycle.generation))

    def _hand_activity(self) -> None:
        """Tell the core when the current link last showed life (it moves a deadline)."""
        link = self.link
        if link is not None and link.last_activity > self.lifecycle.last_inbound:
            self._note_activity(link.last_activity)

    # -- backpressure: the application is behind -----------------------------------------

    def _check_backpressure(self, now: float) -> None:
        link = self.link
        if self._paused_at is None and link is not None and link.io is not None and self.inbox.full:
            link.io.pause_reading()
            self._paused_at = now
            self._feed(ReadingPaused(now, self.lifecycle.generation))

    def _resume_reading(self) -> None:
        now = self.clock()
        paused_at, self._paused_at = self._paused_at, None
        link = self.link
        if link is None or link.io is None or paused_at is None:
            return
        link.io.resume_reading()
        self._feed(ReadingResumed(now, self.lifecycle.generation))
        if (
            self._warned_generation == self.lifecycle.generation
            and now - paused_at >= self.config.heartbeat_timeout
        ):
            logger.info("%s: reading resumed after %.1f s", self.url_for_logs, now - paused_at)

    def _warn_paused(self, now: float) -> None:
        """Once per session: the application has been behind for a heartbeat timeout."""
        paused_at = self._paused_at
        generation = self.lifecycle.generation
        if (
            paused_at is None
            or self._warned_generation == generation
            or now - paused_at < self.config.heartbeat_timeout
        ):
            return
        self._warned_generation = generation
        logger.warning(
            "%s: the application has not taken a message for %.1f s: reading is "
            "paused, and the link is not declared lost for it",
            self.url_for_logs,
            now - paused_at,
        )

    @property
    def dedup(self) -> Deduplicator:
        """The message ids seen (created at first use: most protocols have none)."""
        if self._dedup is None:
            config = self.config
            self._dedup = Deduplicator(config.message_expire_time, config.dedup_max_entries)
        return self._dedup

    @property
    def url_for_logs(self) -> str:
        """The URL without anything that could be a secret."""
        return safe_url(self.url)

    # == outbound =========================================================================

    def _send_frame(self, link: Link, frame: Message) -> None:
        protocol = link.protocol
        if protocol is None or protocol.state is not OPEN:
            return
        if isinstance(frame, str):
            protocol.send_text(frame.encode())
        else:
            protocol.send_binary(frame)
        self._write_out(link)

    def _flush(self) -> None:
        """Send what ``send()`` buffered while the connection was not up, in order."""
        link = self.link
        outbox = self.outbox
        if link is None or link.phase != _Phase.OPEN:
            return
        while outbox:
            self._send_frame(link, outbox.peek())
            outbox.pop()
            self.counters.messages_out += 1

    def _heartbeat(self, link: Link, now: float) -> None:
        """Due every ``heartbeat_interval`` while connected, on a fixed schedule (a late
        wake-up does not shift the next ones; missed ones are skipped, not bunched)."""
        interval = self.config.heartbeat_interval
        self._heartbeat_at += interval
        if self._heartbeat_at <= now:
            self._heartbeat_at = now + interval
        self._check_outbound(link, now)
        if self.adapter.uses_ping:
            ping = link.ping
            # One ping in flight at a time, waited for up to heartbeat_timeout
            # (as websockets' keepalive): a pong slower than the interval counts.
            if ping is not None and now - ping[1] < self.config.heartbeat_timeout:
                return
            link.pings += 1
            payload = link.pings.to_bytes(4, "big")  # unique on this link: no need to draw
            link.ping = (payload, now)
            protocol = link.protocol
            assert protocol is not None
            protocol.send_ping(payload)
            self._write_out(link)
        else:
            heartbeat_id, frame = self.adapter.heartbeat()
            pending = self._pending_acks
            if pending is None:
                pending = self._pending_acks = OrderedDict()
            pending[heartbeat_id] = now
            while len(pending) > _PENDING_HEARTBEATS:
                pending.popitem(last=False)
            self._send_frame(link, frame)
        self.counters.heartbeats_sent += 1

    def _check_outbound(self, link: Link, now: float) -> None:
        """Outbound bytes the peer acknowledged are life (docs/architecture.md, rule 8): while a
        backlog of at least :data:`_OUTBOUND_BACKLOG` waits for the peer, any progress
        of it proves the link alive, though no frame comes back (an upload that holds
        up the pongs).  Not a ping's few bytes: a hung peer whose kernel still
        acknowledges them would otherwise look alive forever."""
        io = link.io
        if io is None:
            return
        if not link.outbound and link.written - link.flushed < _OUTBOUND_BACKLOG:
            link.flushed = link.written  # too little written since to make a backlog
            return
        pending = unacknowledged(io)
        acknowledged = link.written - pending
        if link.outbound and acknowledged > link.flushed:
            link.last_activity = max(link.last_activity, now)
        link.flushed = acknowledged
        link.outbound = pending >= _OUTBOUND_BACKLOG

    # == periodic tasks and jobs ==========================================================

    def _run_periodic(self, name: str, now: float) -> None:
        if name == "cleanup":
            if self._dedup is not None:
                self._dedup.sweep(now)
            self._periodic[name] = now + self.config.cleanup_interval
            return
        del self._periodic[name]  # rescheduled when the run ends
        generation = self.lifecycle.generation
        if name == "token_refresh":
            self._start_job(name, generation, self._refresh_token, generation)
        else:
            self._start_job(name, generation, self._refresh_cookies, generation)

    async def _refresh_token(self, generation: int) -> None:
        """One token refresh; a new token is applied by a planned ``rotate``."""
        assert isinstance(self.credentials, TokenRefresher)
        try:
            changed = await self.credentials.refresh_token()
        except Exception as exc:
            self.counters.token_refresh_failures += 1
            self._token_refresh_failed = True
            logger.warning(
                "token refresh failed (%s); next try in %g s",
                type(exc).__name__,
                self.config.token_retry_interval,
            )
            changed = False
        else:
            self.counters.token_refreshes += 1
            self._token_refresh_failed = False
        if generation != self.lifecycle.generation:
            return
        self._jobs.pop("token_refresh", None)
        self._periodic["token_refresh"] = self.clock() + self._token_refresh_delay()
        self._rearm = True
        if changed:
            self._feed(Rotate(self.clock(), generation, "token refreshed"))
        self._settle()

    def _token_refresh_delay(self) -> float:
        if self._token_refresh_failed:
            return self.config.token_retry_interval
        return self.config.token_refresh_interval

    async def _refresh_cookies(self, generation: int) -> None:
        """One cookie refresh (used at the next handshake); a failure is logged."""
        assert isinstance(self.credentials, CookieRefresher)
        try:
            await self.credentials.refresh_cookies()
        except Exception as exc:
            logger.warning("cookie refresh failed (%s)", type(exc).__name__)
        else:
            self.counters.cookie_refreshes += 1
        if generation == self.lifecycle.generation:
            self._jobs.pop("cookie_refresh", None)
            self._periodic["cookie_refresh"] = self.clock() + self.config.cookie_refresh_interval
            self._rearm = True
            self._settle()

    def _start_escalation(self, generation: int, allowed: bool) -> None:
        """The escalation hook (e.g. re-login), if any and ``allowed``; it always
        reports how it ended, so the core can retry after it."""
        if self.credentials is None:
            self._feed(EscalationFinished(self.clock(), generation, False, "no escalation hook"))
        elif not allowed:
            self._feed(
                EscalationFinished(self.clock(), generation, False, "max_escalations reached")
            )
        else:
            self._start_job("escalation", generation, self._escalate, generation)

    async def _escalate(self, generation: int) -> None:
        assert self.credentials is not None
        try:
            ok = await self.credentials.escalate()
            reason = "escalation succeeded" if ok else "escalation did not recover"
        except Exception as exc:
            logger.warning("credentials escalation raised %s", type(exc).__name__)
            ok, reason = False, f"escalation raised {type(exc).__name__}"
        self._jobs.pop("escalation", None)
        self._feed(EscalationFinished(self.clock(), generation, ok, reason))
        self._settle()


class TaskContext:
    """What a task of the spec's own (``async func(context)``, bound in a Registry) is given.

    It runs while its state lasts (cancelled on leaving it).  :meth:`send` writes a
    frame on the open link at once (the outbound buffer is not used: a task such
    as a subscription runs before the application's sends flow); :meth:`fire`
    fires one of the spec's triggers, as of this task's state (ignored once the
    connection has left it).
    """

    __slots__ = ("_engine", "generation", "task")

    def __init__(self, engine: Engine, task: str, generation: int) -> None:
        self._engine = engine
        self.task = task
        self.generation = generation

    @property
    def state(self) -> str:
        """The connection's current state."""
        return self._engine.lifecycle.state

    def send(self, frame: Message) -> bool:
        """Send ``frame`` (text or bytes, as the protocol frames it) now; False if no
        link is open (the frame is dropped)."""
        engine, link = self._engine, self._engine.link
        if link is None or link.phase != _Phase.OPEN:
            return False
        engine._send_frame(link, frame)
        engine.counters.messages_out += 1
        return True

    def fire(self, trigger: str, reason: str = "") -> None:
        """Fire ``trigger`` (say ``subscribed``); refused or stale triggers are dropped."""
        engine = self._engine
        engine._feed(TriggerFired(engine.clock(), self.generation, trigger, reason))
        engine._settle()


def _reveal(value: Secret | str) -> str:
    """A header value as sent: a :class:`Secret` revealed, a plain string as it is."""
    return value.reveal() if isinstance(value, Secret) else str(value)


#: How the engine starts each task of the packaged lifecycle, by its spec name (the
#: names of ``LIFECYCLE_VOCABULARY.names("task")``; tests/test_spec_checks.py holds
#: them equal).
TASK_STARTS: Final[Mapping[str, Callable[[Engine, StartTask, float], None]]] = {
    "dial": Engine._start_dial,
    "reader": Engine._start_reader,
    "heartbeat": Engine._start_heartbeat,
    "token_refresh": Engine._start_token_refresh,
    "cookie_refresh": Engine._start_cookie_refresh,
    "cleanup": Engine._start_cleanup,
    "flush": Engine._start_flush,
    "escalation": Engine._start_escalation_task,
}
