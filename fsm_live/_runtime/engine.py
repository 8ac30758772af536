"""The engine: one synchronous driver per connection, between its links and its core.

Everything that happens to a connection reaches its engine as a call on the
event loop's thread: bytes on a link, the end of a link, the timer, an
application call (send, request, close, rotate, reset), a job's report.  The
engine decides nothing: it carries bytes and events in, and effects out.

* **in**: bytes go to the :class:`~fsm_live._runtime.link.Link` they arrived on,
  which parses them (websockets' Sans-I/O ``ClientProtocol``) and reports whole
  messages, pongs and its end; messages are decoded by the protocol adapter
  (never raising: an undecodable frame is delivered as a value), acknowledged,
  de-duplicated and put in the inbox, in order, from the current link and from
  links being closed alike (docs/architecture.md, rules 7 and 10); what the
  lifecycle must know becomes a core event (:mod:`fsm_live.core.events`);
* **core**: the :class:`~fsm_live.core.lifecycle.Lifecycle` owns the state, every
  deadline and the delivery ledger; its effects are carried out in order, one
  event at a time (rule 1: the engine is the one place that fires triggers);
* **out**: frames ``send()`` accepted go through the ledger (written at once when
  a link is open and nothing waits before them); heartbeats, refreshes and link
  releases when the core says; the timer is armed for the core's
  ``next_deadline()``.

Work that must await runs as jobs (:mod:`fsm_live._runtime.jobs`): the dial (with
the credential calls of :mod:`fsm_live._runtime.credential_jobs`), each refresh,
the escalation, the application's handlers, tasks of the spec's own, and on
byte streams a reader and a writer.  On asyncio over TCP or TLS an idle
connection has no task at all.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final

from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.uri import WebSocketURI, parse_uri

from fsm_live._runtime import credential_jobs
from fsm_live._runtime.inbox import Inbox
from fsm_live._runtime.jobs import Job, Jobs
from fsm_live._runtime.link import Link, Phase
from fsm_live._runtime.links import LinkIO, abort_with_reset, unacknowledged
from fsm_live._runtime.requests import PendingRequest
from fsm_live._runtime.stats import AckObserver, Counters
from fsm_live._runtime.task_context import TaskContext
from fsm_live._runtime.timers import Timer
from fsm_live.config import Config
from fsm_live.core.effects import (
    AbortLink,
    CancelTask,
    Effect,
    Emit,
    Notice,
    ReleaseLink,
    RequestsExpired,
    RunRefresh,
    SendHeartbeat,
    StartTask,
    TransitionRecord,
)
from fsm_live.core.events import (
    Close,
    CredentialsRefreshed,
    EscalationFinished,
    Event,
    HeartbeatAcked,
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
)
from fsm_live.core.lifecycle import CORE_TASKS, Lifecycle
from fsm_live.credentials import CredentialsProvider, provider_errors
from fsm_live.errors import (
    RequestTimeout,
    SpecError,
    TransitionRefused,
    TransportError,
)
from fsm_live.protocols.base import (
    Acknowledging,
    ProtocolAdapter,
    SimpleDecoder,
    Undecodable,
)
from fsm_live.transport.base import Message
from fsm_live.transport.url import safe_url

__all__ = ("ENGINE_TASKS", "Engine", "LinkOpener")

logger = logging.getLogger("fsm_live")

#: Unacknowledged outbound bytes from which their progress counts as the link's life.
_OUTBOUND_BACKLOG: Final = 16 * 1024
#: Times a deadline of silence is put off in a row while bytes wait to be read.
_MAX_DEFERRALS: Final = 64

#: Opens the byte link for a :class:`Link` (TCP, TLS, a proxy tunnel, memory) and
#: makes it report to the link (:class:`~fsm_live._runtime.links.LinkEvents`).
#: Raises TransportError.
LinkOpener = Callable[[Link], Awaitable[None]]


class Engine:
    """The runtime of one connection; see the module docstring.

    ``open_link`` opens a link's byte link; ``on_transition(record)`` is called
    after every transition, once its effects are carried out; ``on_change()``
    after every call that changed something an application may wait for.
    """

    __slots__ = (
        "_backlog",
        "_decode_simple",
        "_deferrals",
        "_delivering",
        "_events",
        "_extensions",
        "_feeding",
        "_flushing",
        "_jobs",
        "_on_change",
        "_on_transition",
        "_open_link",
        "_rearm",
        "adapter",
        "clock",
        "config",
        "counters",
        "crash",
        "credentials",
        "inbox",
        "jobs",
        "lifecycle",
        "link",
        "links",
        "on_heartbeat_ack",
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
        counters: Counters,
        jobs: Jobs,
        clock: Callable[[], float],
        open_link: LinkOpener,
        on_transition: Callable[[TransitionRecord], None],
        on_change: Callable[[], None],
        user_agent: str | None = "fsm_live",
    ) -> None:
        self.url = url
        self.wsuri: WebSocketURI = _parse_uri(url)
        self.lifecycle = lifecycle
        self.adapter = adapter
        self.config = config
        self.credentials = credentials
        self.inbox = inbox
        self.counters = counters
        #: Called with ``(at, rtt)`` after every heartbeat ack when not None.
        self.on_heartbeat_ack: AckObserver | None = None
        self.jobs = jobs
        self.clock = clock
        self.user_agent = user_agent
        self._open_link = open_link
        self._on_transition = on_transition
        self._on_change = on_change
        acknowledging = isinstance(adapter, Acknowledging) and adapter.acknowledges
        # The fast path of the adapter, where nothing it decodes can be an ack.
        self._decode_simple = (
            adapter.decode_simple
            if isinstance(adapter, SimpleDecoder) and not acknowledging
            else None
        )
        self.timer: Timer | None = None
        #: The link the lifecycle is on (dialling, registering or open), if any.
        self.link: Link | None = None
        #: Every link not closed yet, by id (the current one and those closing).
        self.links: dict[int, Link] = {}
        self._events: list[Event] = []  # core events waiting for the one being handled
        self._feeding = False
        self._jobs: dict[str, Job] = {}  # the spec tasks that run as jobs, by name
        self._delivering = False  # the reader task is active
        self._flushing = False  # the flush task is active: send() writes at once
        self._rearm = False  # a deadline may have moved earlier: arm the timer again
        self._deferrals = 0
        self._backlog = (0, False)  # (acknowledged bytes, a backlog was seen) of the link
        self._extensions = enable_client_permessage_deflate(None) if config.compression else None
        lifecycle.report = self._report  # an endpoint shared with others reaches it so
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

    def send(
        self,
        frame: Message,
        *,
        ack_id: Hashable | None = None,
        deadline: float = math.inf,
        handle: object = None,
    ) -> None:
        """Send ``frame``: written now if a link is open and nothing waits before it,
        else queued (in order) in the delivery ledger, which keeps it until it left
        the process, or until acknowledged when ``ack_id`` is given.

        Raises :class:`~fsm_live.errors.BufferFull` when ``outbound_buffer`` frames
        are live in the ledger.
        """
        ledger = self.lifecycle.ledger
        link = self.link
        tracked = ack_id is not None or deadline != math.inf
        if tracked:
            self._rearm = True
        if not self._flushing or link is None or link.phase != Phase.OPEN or ledger.has_queued:
            ledger.queue(frame, ack_id=ack_id, deadline=deadline, handle=handle)
            self._settle()
            return
        ledger.check_room()
        end = link.send(frame)
        self.counters.messages_out += 1
        confirmed = link.confirmed
        if confirmed >= end and not tracked:
            return  # it left the process: nothing to keep (the hot path)
        entry = ledger.queue(frame, ack_id=ack_id, deadline=deadline, handle=handle)
        ledger.written(entry, link.id, end)
        ledger.confirm(link.id, confirmed)
        self._settle()

    @property
    def writing_paused(self) -> bool:
        """True while the current link's write buffer is above its high mark."""
        link = self.link
        return link is not None and link.write_paused

    @property
    def idle(self) -> bool:
        """True once no link is open or closing (after a close: the engine is done)."""
        return not self.links

    def cancel_jobs(self) -> None:
        """Cancel the spec tasks that run as jobs (the connection is done)."""
        for job in self._jobs.values():
            job.cancel()
        self._jobs.clear()

    def abort(self, reason: str) -> None:
        """Close now, abortively: every link is reset (``SO_LINGER`` 0: nothing queued
        is sent or retransmitted, no close frame), then the lifecycle closes."""
        for link in list(self.links.values()):
            link.phase = Phase.CLOSED
            if link.io is not None:
                abort_with_reset(link.io)
        self._feed(Close(self.clock(), reason))
        self._settle()

    def _may_act(self) -> bool:
        """False (and the connection aborted, once) if ``owned`` says this process may
        no longer act for the connection."""
        owned = self.owned
        if owned is None or owned():
            return True
        if self.links or not self.lifecycle.is_final:
            self.abort("no longer owned by this worker")
        return False

    def abort_links(self) -> None:
        """Drop every link now (the connection is done, or out of time to close)."""
        for link in list(self.links.values()):
            link.abort()

    def finish(self) -> list[object]:
        """The connection is done: the ledger's live frames are dropped; returns their
        handles (their senders are told the connection closed)."""
        return [entry.handle for entry in self.lifecycle.ledger.drain()]

    def message_taken(self) -> None:
        """The application took a message from the inbox: read again if there is room."""
        link = self.link
        if link is not None and self.lifecycle.reading_paused and self.inbox.has_room:
            if link.io is not None:
                link.io.resume_reading()
            self._feed(ReadingResumed(self.clock(), self.lifecycle.generation))
            self._settle()

    def job_crashed(self, job: Job, exc: Exception) -> None:
        """A job let an exception out (a bug): its link fails over, as a crash."""
        if job.generation == self.lifecycle.generation:
            failure = self.lifecycle.machine.classifier.classify_exception(exc)
            self._feed(LinkFailed(self.clock(), job.generation, failure))
            self._settle()

    def crashed(self, exc: BaseException) -> None:
        """Application code run by the engine raised: close the connection, keep ``exc``."""
        if self.crash is None:
            self.crash = exc
            self._feed(Close(self.clock(), f"{type(exc).__name__} raised in a callback"))

    # == the timer ========================================================================

    def on_timer(self, due: float = -math.inf) -> None:
        """The timer armed for ``due`` fired: hand the core what the links showed, then
        let it judge the deadlines due now."""
        now = max(self.clock(), due)
        self._rearm = True
        link = self.link
        lifecycle = self.lifecycle
        if link is not None:
            self._note_link_life(link, now)
            silence = lifecycle.timers.get("heartbeat_timeout", math.inf)
            if silence <= now and link.input_pending() and self._deferrals < _MAX_DEFERRALS:
                # Bytes already received wait to be read: read them before judging
                # the silence (docs/architecture.md, rule 8).
                self._deferrals += 1
                self._settle(wake_at=now)
                return
        self._deferrals = 0
        self._feed(Tick(now))
        self._settle()

    def _note_link_life(self, link: Link, now: float) -> None:
        """Hand the core the link's latest evidence of life: its last complete frame,
        or progress of our own write backlog acknowledged by the peer."""
        if link.phase == Phase.OPEN:
            self._check_backlog(link, now)
        if link.last_frame_at > self.lifecycle.last_inbound:
            self.lifecycle.note_inbound(link.last_frame_at)
        if link.id in self.links:
            self.lifecycle.ledger.confirm(link.id, link.confirmed)

    def _check_backlog(self, link: Link, now: float) -> None:
        """While a backlog of at least 16 KiB waits for the peer, its progress proves
        the link alive though no frame comes back (an upload holding up the pongs:
        that silence is ours).  Not a ping's few bytes: a hung peer whose kernel
        still acknowledges them would otherwise look alive forever."""
        io = link.io
        if io is None:
            return
        acknowledged, seen = self._backlog
        if not seen and link.written - acknowledged < _OUTBOUND_BACKLOG:
            self._backlog = (link.written, False)
            return
        pending = unacknowledged(io)
        now_acknowledged = link.written - pending
        if seen and now_acknowledged > acknowledged:
            link.last_frame_at = max(link.last_frame_at, now)
        self._backlog = (now_acknowledged, pending >= _OUTBOUND_BACKLOG)

    def _settle(self, wake_at: float | None = None) -> None:
        """After every call: arm the timer if a deadline may have moved earlier; tell
        the application something changed."""
        timer = self.timer
        if timer is not None and (self._rearm or wake_at is not None):
            self._rearm = False
            deadline = self.lifecycle.next_deadline()
            earliest = math.inf if deadline is None else deadline
            timer.arm(earliest if wake_at is None else min(earliest, wake_at))
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
        """Carry out a step's effects in order."""
        for effect in effects:
            if isinstance(effect, StartTask):
                self._start_task(effect)
            elif isinstance(effect, CancelTask):
                self._cancel_task(effect.task)
            elif isinstance(effect, Emit):
                self._emitted(effect.record)
            elif isinstance(effect, ReleaseLink):
                self._release(effect.link, effect.code)
            elif isinstance(effect, SendHeartbeat):
                self._heartbeat()
            elif isinstance(effect, RunRefresh):
                task = _REFRESH_TASKS[effect.kind]
                self._start_job(task, effect.generation, self._refresh, effect)
            elif isinstance(effect, AbortLink):
                link = self.links.get(effect.link)
                if link is not None:
                    link.abort()
            elif isinstance(effect, RequestsExpired):
                for handle in effect.handles:
                    # Given up without an ack: a send()'s after ack_timeout, a request()'s
                    # at its timeout (as `acknowledged` counts both kinds).
                    self.counters.unacknowledged += 1
                    if isinstance(handle, PendingRequest):
                        handle.fail(RequestTimeout("no acknowledgement within the timeout"))
            elif isinstance(effect, Notice):
                logger.log(
                    logging.getLevelName(effect.level), "%s: %s", self.url_for_logs, effect.message
                )
            # ScheduleTimer / CancelTimer: next_deadline() already reflects them.

    def _emitted(self, record: TransitionRecord) -> None:
        try:
            self._on_transition(record)
        except Exception as exc:
            self.crashed(exc)

    def _start_task(self, effect: StartTask) -> None:
        start = ENGINE_TASKS.get(effect.task)
        if start is not None:
            start(self, effect)
            return
        if effect.task in CORE_TASKS:
            return  # run by the core, as deadlines
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
            job = self._jobs.get(context.task)
            if job is not None and job.generation == context.generation:
                del self._jobs[context.task]

    def _cancel_task(self, name: str) -> None:
        job = self._jobs.pop(name, None)
        if job is not None:
            job.cancel()
        if name == "reader":
            self._delivering = False
        elif name == "flush":
            self._flushing = False

    def _start_job(
        self, name: str, generation: int, work: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        job = self.jobs.start(name, work, *args)
        job.generation = generation
        self._jobs[name] = job

    # -- the engine's tasks (ENGINE_TASKS, below the class, maps their names) ----------------

    def _start_dial(self, effect: StartTask) -> None:
        link = self.link = Link(self, effect.generation)
        if self.owned is not None:
            link.guard = self._may_act
        self.links[link.id] = link
        self._backlog = (0, False)
        self._start_job("dial", effect.generation, self._dial, link, effect)

    def _start_reader(self, effect: StartTask) -> None:
        self._delivering = True
        link = self.link
        if link is not None:
            early, link.early = link.early, []
            now = self.clock()
            for frame in early:
                self._deliver_frame(link, frame, now)

    def _start_flush(self, effect: StartTask) -> None:
        self._flushing = True
        self._flush()

    def _start_escalation(self, effect: StartTask) -> None:
        if self.credentials is None or not effect.may_escalate:
            # Nothing to await: it did not recover, said at once (the state's waiters
            # see at once that it needs a reset).
            reason = "no escalation hook" if self.credentials is None else "max_escalations reached"
            self._feed(EscalationFinished(self.clock(), effect.generation, False, reason))
            return
        self._start_job("escalation", effect.generation, self._escalate, effect)

    # == jobs =============================================================================

    async def _dial(self, link: Link, effect: StartTask) -> None:
        """Credentials (refreshed first when the core says), then the byte link; the
        rest happens in the link's callbacks."""
        credentials, generation = self.credentials, effect.generation
        try:
            if effect.refresh_credentials and credentials is not None:
                await credential_jobs.refresh_auth(credentials)
                self._report(CredentialsRefreshed(self.clock(), generation, "auth", True))
            if effect.refresh_token:  # it is older than token_refresh_interval
                outcome = await credential_jobs.refresh_token(credentials)
                self._count_refresh("token", outcome.ok)
                self._report(CredentialsRefreshed(self.clock(), generation, "token", outcome.ok))
            link.headers = await credential_jobs.handshake_headers(credentials)
            with provider_errors():
                link.registration = await self.adapter.prepare(credentials)
            await self._open_link(link)
        except TransportError as error:
            self.link_failed(link, error)
            self._settle()

    async def _refresh(self, effect: RunRefresh) -> None:
        """One refresh by age (the core applies a new token by a planned ``rotate``)."""
        if effect.kind == "token":
            outcome = await credential_jobs.refresh_token(self.credentials)
        else:
            outcome = await credential_jobs.refresh_cookies(self.credentials)
        self._count_refresh(effect.kind, outcome.ok)
        task = _REFRESH_TASKS[effect.kind]
        job = self._jobs.get(task)
        if job is not None and job.generation == effect.generation:
            del self._jobs[task]
        self._report(
            CredentialsRefreshed(
                self.clock(), effect.generation, effect.kind, outcome.ok, outcome.changed
            )
        )

    def _count_refresh(self, kind: str, ok: bool) -> None:
        counters = self.counters
        if kind == "token":
            if ok:
                counters.token_refreshes += 1
            else:
                counters.token_refresh_failures += 1
        elif ok:
            counters.cookie_refreshes += 1

    async def _escalate(self, effect: StartTask) -> None:
        assert self.credentials is not None
        outcome = await credential_jobs.escalate(self.credentials)
        self._jobs.pop("escalation", None)
        self._report(
            EscalationFinished(self.clock(), effect.generation, outcome.ok, outcome.reason)
        )

    def _report(self, event: Event) -> None:
        """A job's report (rule 1: the engine fires, the job only reports)."""
        self._feed(event)
        self._settle()

    # == the links ========================================================================

    def link_made(self, link: Link, io: LinkIO) -> None:
        """The byte link under ``link`` is open: start the opening handshake."""
        if link is not self.link:  # dialled for a state that was left meanwhile
            io.abort()
            return
        link.made(
            io,
            self.wsuri,
            extensions=self._extensions,
            max_size=self.config.max_size,
            user_agent=self.user_agent,
            now=self.clock(),
        )
        self._settle()

    def link_data(self, link: Link, data: bytes) -> None:
        """Bytes arrived on ``link``."""
        if self.owned is not None and not self._may_act():
            return
        link.receive(data, self.clock())
        if link is self.link:
            ledger = self.lifecycle.ledger
            if ledger.has_written:
                ledger.confirm(link.id, link.confirmed)
            self._check_backpressure(link)
        self._settle()

    def link_eof(self, link: Link) -> None:
        link.eof()
        self._settle()

    def link_lost(self, link: Link, exc: BaseException | None) -> None:
        link.lost(exc)
        if self.links.pop(link.id, None) is not None:
            self._feed(LinkClosed(self.clock(), link.id))
        self._settle()

    def link_writing(self, link: Link, paused: bool) -> None:
        was_paused = link.write_paused
        link.writing(paused)
        if link is self.link and not paused:
            ledger = self.lifecycle.ledger
            if ledger.has_written:
                ledger.confirm(link.id, link.confirmed)
            if not was_paused:
                return  # a writer caught up: nobody waits on it
        self._settle()

    def link_response(self, link: Link, now: float) -> None:
        if link is not self.link:
            return
        registration = link.registration
        if registration is None:
            self._registered(link, now)
            return
        for frame in registration.request():
            link.send(frame)

    def link_message(self, link: Link, message: Message, now: float) -> None:
        if self.owned is not None and not self._may_act():
            return
        if link.phase == Phase.REGISTERING:
            if link is self.link:
                self._registration_reply(link, message, now)
        elif link is not self.link or self._delivering:
            # A link being closed (a rotation, a planned close) delivers like any other.
            self._deliver_frame(link, message, now)
        else:
            link.hold(message)  # before the reader starts: delivered then

    def link_pong(self, link: Link, payload: bytes, now: float) -> None:
        if link is self.link:
            self._acked(now, self.lifecycle.heartbeat_acked(payload, now))

    def link_failed(self, link: Link, error: TransportError) -> None:
        """``link`` failed or ended: if it is the current one, the lifecycle leaves it."""
        if link is not self.link:
            return
        failure = self.lifecycle.machine.classifier.classify_error(error)
        self.counters.last_error = str(failure)
        self._feed(LinkFailed(self.clock(), self.lifecycle.generation, failure))

    def _release(self, link_id: int, code: int) -> None:
        """The lifecycle left link ``link_id``: close it (the core keeps its deadline)."""
        link = self.links.get(link_id)
        if link is self.link:
            self.link = None
        job = self._jobs.get("dial")
        if job is not None and job.generation == link_id:
            del self._jobs["dial"]
            job.cancel()
        if link is None:
            return
        if link.early:  # frames that came before a reader ran: delivered all the same
            early, link.early = link.early, []
            now = self.clock()
            for frame in early:
                self._deliver_frame(link, frame, now)
        if not link.close(code, self.clock(), self.config.close_timeout) and link.io is None:
            # Nothing was open: no byte link will report its end.
            del self.links[link_id]
            self._feed(LinkClosed(self.clock(), link_id))

    def _registration_reply(self, link: Link, frame: Message, now: float) -> None:
        registration = link.registration
        assert registration is not None
        try:
            then = registration.reply(frame)
        except TransportError as error:
            link.fail(error)
            return
        if then is None:
            link.hold(frame)  # a push before the reply: delivered once connected
            return
        for reply in then:
            link.send(reply)
        self._registered(link, now)

    def _registered(self, link: Link, now: float) -> None:
        link.phase = Phase.OPEN
        link.last_frame_at = now
        self._feed(Opened(now, self.lifecycle.generation))

    # == inbound ==========================================================================

    def _deliver_frame(self, link: Link, frame: Message, now: float) -> None:
        """Everything one inbound data frame means, item by item, in order."""
        decode_simple = self._decode_simple
        if decode_simple is not None:
            try:
                simple = decode_simple(frame)
            except Exception as exc:  # an adapter's bug must not cost the link
                simple = (Undecodable.of(frame, type(exc).__name__), None)
            if simple is not None:
                self._deliver(simple[0], simple[1], now, link)
                return
        try:
            items = self.adapter.decode(frame)
        except Exception as exc:
            self._deliver(Undecodable.of(frame, type(exc).__name__), None, now, link)
            return
        for item in items:
            ack = item.ack
            if ack is not None and self._acknowledged(ack, item.answer, now, link):
                continue
            if item.reply is not None:
                link.send_reply(item.reply)
            if item.message is not None:
                self._deliver(item.message, item.message_id, now, link)

    def _acknowledged(self, ack: Hashable, answer: Any, now: float, link: Link) -> bool:
        """An ack: of a heartbeat (its round trip), of a request (its answer goes to
        the sender, not to the inbox), or of a frame the ledger kept.  True if the
        item was consumed; an ack of a plain ``send()``, or of nothing we sent, may
        still carry a message."""
        if link is self.link:
            rtt = self.lifecycle.heartbeat_acked(ack, now)
            if rtt is not None:
                self._acked(now, rtt)
                return True
        lifecycle = self.lifecycle
        entry = lifecycle.ledger.acknowledge(ack)
        if entry is None:
            return False
        self.counters.acknowledged += 1
        if link is self.link and lifecycle.awaits_proof:  # the session works: proof
            self._feed(MessageReceived(now, lifecycle.generation))
        handle = entry.handle
        if isinstance(handle, PendingRequest):
            handle.resolve(answer)
            return True
        return False

    def _deliver(self, message: Any, message_id: Hashable | None, now: float, link: Link) -> None:
        counters = self.counters
        lifecycle = self.lifecycle
        if message_id is not None and lifecycle.dedup.seen(message_id, now):
            counters.duplicates_dropped += 1
            return
        counters.messages_in += 1
        if link is self.link and lifecycle.awaits_proof:
            self._feed(MessageReceived(now, lifecycle.generation))
        self.inbox.put(message)

    def _acked(self, now: float, rtt: float | None) -> None:
        """A heartbeat's ack: the core hears of it at once while it ends the stability
        window; otherwise the link's last frame says it all."""
        if rtt is None:
            return  # an ack of nothing we sent is not an ack
        counters = self.counters
        counters.heartbeats_acked += 1
        counters.heartbeat_rtt = rtt
        observer = self.on_heartbeat_ack
        if observer is not None:
            observer(now, rtt)
        lifecycle = self.lifecycle
        if lifecycle.awaits_proof:
            self._feed(HeartbeatAcked(now, lifecycle.generation, rtt))

    # -- backpressure: the application is behind -----------------------------------------

    def _check_backpressure(self, link: Link) -> None:
        lifecycle = self.lifecycle
        if not lifecycle.reading_paused and self.inbox.full and link.io is not None:
            link.io.pause_reading()
            self._feed(ReadingPaused(self.clock(), lifecycle.generation))

    @property
    def url_for_logs(self) -> str:
        """The URL without anything that could be a secret."""
        return safe_url(self.url)

    # == outbound =========================================================================

    def _flush(self) -> None:
        """Write what the ledger holds for a link, oldest first: frames sent while
        no link could take them, and those a broken link did not deliver."""
        link = self.link
        if link is None or link.phase != Phase.OPEN:
            return
        ledger = self.lifecycle.ledger
        counters = self.counters
        for entry in ledger.pending():
            if entry.link == -1:
                counters.messages_out += 1
            else:
                counters.resent += 1
            ledger.written(entry, link.id, link.send(entry.frame))
        ledger.confirm(link.id, link.confirmed)

    def _heartbeat(self) -> None:
        """One heartbeat on the current link: a ping frame or the protocol's own."""
        link = self.link
        if link is None or link.phase != Phase.OPEN:
            return
        now = self.clock()
        if self.adapter.uses_ping:
            heartbeat_id: Hashable = link.ping()
        else:
            heartbeat_id, frame = self.adapter.heartbeat()
            link.send(frame)
        self.lifecycle.heartbeat_sent(heartbeat_id, now)
        self.counters.heartbeats_sent += 1


@functools.lru_cache(maxsize=4096)
def _parse_uri(url: str) -> WebSocketURI:
    """websockets' parsed URI, one per URL (a fleet's members share it; never mutated)."""
    return parse_uri(url)


#: How the engine starts each task of the packaged lifecycle it runs, by spec name.
ENGINE_TASKS: Final[dict[str, Callable[[Engine, StartTask], None]]] = {
    "dial": Engine._start_dial,
    "reader": Engine._start_reader,
    "flush": Engine._start_flush,
    "escalation": Engine._start_escalation,
}
#: The spec task whose state runs each kind of refresh (its job has that name).
_REFRESH_TASKS: Final = {"token": "token_refresh", "cookies": "cookie_refresh"}
