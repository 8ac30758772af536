"""The public async context manager for one live connection.

::

    async with fsm_live.connect("wss://example.org/feed", protocol="json") as conn:
        await conn.wait_connected()
        await conn.send({"subscribe": "prices"})
        async for message in conn:
            ...

Entering starts the lifecycle (DISCONNECTED -> CONNECTING) and returns at once;
the connection then keeps itself alive: heartbeats, reconnects with backoff,
credential refresh.  Leaving (or :meth:`LiveConnection.close`) closes it from
any state: the link is closed within ``close_timeout`` (aborted at the deadline),
every job is cancelled and joined, and the state ends CLOSED.  Works on anyio's
asyncio and trio backends.

Underneath, one engine per connection (``fsm_live._runtime.engine``) owns the
link and drives websockets' Sans-I/O protocol and the lifecycle core; this class
is the application's side of it (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypedDict

import anyio
import anyio.abc
import anyio.lowlevel
import sniffio

from fsm_live._runtime.credential_jobs import CookieRefresher, TokenRefresher
from fsm_live._runtime.engine import Engine
from fsm_live._runtime.inbox import Handler, Inbox
from fsm_live._runtime.jobs import Job, Jobs
from fsm_live._runtime.link import Link
from fsm_live._runtime.links import AsyncioLink, StreamLink
from fsm_live._runtime.requests import PendingRequest
from fsm_live._runtime.stats import Counters, Stats, both
from fsm_live._runtime.timers import LoopTimer, TaskTimer
from fsm_live._runtime.trace import TraceWriter
from fsm_live._runtime.wakeup import Wakeup
from fsm_live.config import Config, checked
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.endpoint import Endpoint
from fsm_live.core.lifecycle import Lifecycle, LifecycleMachine, deliver_to_lifecycle
from fsm_live.core.pacing import ReconnectPacer
from fsm_live.credentials import CredentialsProvider
from fsm_live.errors import (
    ConfigError,
    ConnectionClosed,
    ConnectionFailed,
    TransitionRefused,
    UsageError,
)
from fsm_live.lwp.protocol import LwpProtocol
from fsm_live.protocols import JsonProtocol, PingProtocol, ProtocolAdapter
from fsm_live.protocols.base import Acknowledging
from fsm_live.spec import Spec
from fsm_live.transport.base import AsyncioTransport, Target, Transport
from fsm_live.transport.tcp import TcpTransport, target_for
from fsm_live.transport.url import check_url, safe_url

__all__ = (
    "PROTOCOLS",
    "TRANSITIONS_LOGGER",
    "ConnectionOptions",
    "LiveConnection",
    "connect",
    "default_machine",
    "get_protocol",
)

#: Every transition is logged here, at the level the spec gives its destination state.
TRANSITIONS_LOGGER: Final = "fsm_live.transitions"
transitions_logger = logging.getLogger(TRANSITIONS_LOGGER)
#: Time allowed past close_timeout for an aborted link to report itself closed.
_CLOSE_MARGIN: Final = 1.0
_DEFAULT_TRANSPORT: Final = TcpTransport()


#: Protocol adapters by the names ``connect(protocol=...)``, the CLI and fleet files use.
PROTOCOLS: Final[dict[str, Callable[[], ProtocolAdapter]]] = {
    "ping": PingProtocol,
    "json": JsonProtocol,
    "lwp": LwpProtocol,
}


def get_protocol(name: str) -> ProtocolAdapter:
    """A new adapter by name; raises :class:`ConfigError` naming the known ones."""
    try:
        return PROTOCOLS[name]()
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise ConfigError("protocol", f"unknown protocol {name!r} (known: {known})") from None


class ConnectionOptions(TypedDict, total=False):
    """The keywords of :class:`LiveConnection` a :class:`~fsm_live.fleet.Fleet` passes
    on to its members: all but ``machine`` and ``pacer``, which are the fleet's."""

    protocol: str | ProtocolAdapter
    config: Config | None
    credentials: CredentialsProvider | None
    transport: Transport | None
    ssl: ssl.SSLContext | None
    proxy: str | bool | None
    on_message: Handler | None
    trace: str | Path | None
    random: Callable[[], float] | None


@functools.cache
def _default_config() -> Config:
    """``Config()``, built once: it is frozen, and building it checks every field
    (about 0.2 ms, a third of a connection's set-up)."""
    return Config()


def endpoint_key(target: Target) -> str:
    """How an endpoint is named and shared: ``host:port``, and its proxy if any
    (without its credentials)."""
    key = f"{target.host}:{target.port}"
    return key if target.proxy is None else f"{key} via {safe_url(target.proxy)}"


def new_endpoint(
    target: Target, config: Config, *, random: Callable[[], float] | None = None
) -> Endpoint:
    """An :class:`~fsm_live.core.endpoint.Endpoint` for ``target`` with ``config``'s
    settings, delivering to its members' lifecycles."""
    endpoint = Endpoint(
        endpoint_key(target),
        down_after=config.endpoint_failures,
        probe_interval=config.probe_interval,
        random=random,
    )
    endpoint.deliver = deliver_to_lifecycle
    return endpoint


@functools.cache
def default_machine() -> LifecycleMachine:
    """The one Machine built from the packaged spec, shared by every connection."""
    return LifecycleMachine(Spec.default())


class LiveConnection:
    """One WebSocket client connection kept alive by the lifecycle machine.

    Options (all keyword-only):

    * ``protocol``: an adapter name (``"ping"``, ``"json"``, ``"lwp"``) or a
      :class:`~fsm_live.protocols.ProtocolAdapter`;
    * ``config``: a :class:`~fsm_live.config.Config` (defaults: the seed's);
    * ``credentials``: a :class:`~fsm_live.credentials.CredentialsProvider` for
      handshake headers, refresh after an auth failure, and escalation in FAILED;
    * ``transport``: a :class:`~fsm_live.transport.base.Transport` (default: TCP,
      TLS for ``wss://``, through the environment's proxy if one is set);
    * ``ssl``: an ``ssl.SSLContext`` for ``wss://`` (default: verification on);
    * ``proxy``: a proxy URL (``http://``, ``socks5h://``, ...), True for the
      environment's (the default), None for none;
    * ``on_message``: an async handler; without one, iterate the connection;
    * ``trace``: a path; every transition is appended to it as a JSON line;
    * ``machine``: a shared :class:`~fsm_live.core.lifecycle.LifecycleMachine`
      (default: the packaged spec's); ``random``: the jitter source;
    * ``pacer``: a :class:`~fsm_live.core.pacing.ReconnectPacer` shared with
      other connections of this event loop, bounding their reconnect attempts
      per second (a :class:`~fsm_live.fleet.Fleet` passes its own);
    * ``endpoint``: the :class:`~fsm_live.core.endpoint.Endpoint` this connection
      dials, shared with others that dial it (a fleet passes one per endpoint);
      default: one of its own (:func:`new_endpoint`);
    * ``owned``: an ownership check, ``owned() -> bool``, asked before each
      inbound message is handled (decoded, acknowledged, delivered) and before
      each write to the link; once it answers False the connection closes
      abortively (:meth:`abort`) and that message or frame is dropped (a
      :class:`~fsm_live.fleet.Fleet` passes its coordinator's
      :meth:`~fsm_live.cluster.Ownership.valid`).  It runs on every message: keep
      it cheap.

    Raises :class:`~fsm_live.errors.ConfigError` for a URL a client cannot dial
    (not ``ws://`` or ``wss://``, no host, a port outside 1-65535, a fragment),
    naming what is wrong, for an unknown protocol name or an unusable proxy.
    """

    __slots__ = (
        "_asyncio",
        "_callbacks",
        "_changed",
        "_counters",
        "_dial_state",
        "_encode_tracked",
        "_engine",
        "_entered_by",
        "_failure",
        "_fast_path",
        "_finished",
        "_inbox",
        "_jobs",
        "_lifecycle",
        "_started_at",
        "_starting",
        "_state",
        "_taken",
        "_target",
        "_task_group",
        "_trace",
        "_trace_path",
        "_transport",
        "adapter",
        "config",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        protocol: str | ProtocolAdapter = "ping",
        config: Config | None = None,
        credentials: CredentialsProvider | None = None,
        transport: Transport | None = None,
        ssl: ssl.SSLContext | None = None,
        proxy: str | bool | None = True,
        on_message: Handler | None = None,
        trace: str | Path | None = None,
        machine: LifecycleMachine | None = None,
        random: Callable[[], float] | None = None,
        pacer: ReconnectPacer | None = None,
        endpoint: Endpoint | None = None,
        owned: Callable[[], bool] | None = None,
    ) -> None:
        self.url = check_url(url)
        self.config = checked(config) or _default_config()
        self.adapter = get_protocol(protocol) if isinstance(protocol, str) else protocol
        # Decided once: a runtime protocol check costs more than a whole send().
        adapter = self.adapter
        self._encode_tracked = (
            adapter.encode_tracked
            if isinstance(adapter, Acknowledging) and adapter.acknowledges
            else None
        )
        self._target = target_for(url, ssl=ssl, proxy=proxy)
        self._transport = transport or _DEFAULT_TRANSPORT
        #: The transport, if it can hand a connection to an asyncio protocol (no task).
        self._fast_path = self._transport if isinstance(self._transport, AsyncioTransport) else None
        refreshable = [
            kind
            for kind, able in (("token", TokenRefresher), ("cookies", CookieRefresher))
            if credentials is not None and isinstance(credentials, able)  # a slow check
        ]
        self._lifecycle = Lifecycle(
            machine or default_machine(),
            self.config,
            random=random,
            can_refresh_credentials=credentials is not None,
            refreshable=refreshable,
            pacer=pacer,
            endpoint=endpoint or new_endpoint(self._target, self.config, random=random),
        )
        self._counters = Counters()
        self._jobs = Jobs(self._job_crashed, self._notify)
        self._inbox = Inbox(
            self.config.message_concurrency, on_message, jobs=self._jobs, counts=self._counters
        )
        self._engine = Engine(
            url=url,
            lifecycle=self._lifecycle,
            adapter=self.adapter,
            config=self.config,
            credentials=credentials,
            inbox=self._inbox,
            counters=self._counters,
            jobs=self._jobs,
            clock=anyio.current_time,
            open_link=self._open_link,
            on_transition=self._on_transition,
            on_change=self._notify,
        )
        self._inbox.on_taken = self._engine.message_taken
        self._engine.owned = owned
        self._trace_path = trace
        self._trace: TraceWriter | None = None
        self._started_at = 0.0
        self._callbacks: list[Callable[[TransitionRecord], None]] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._entered_by: object = None  # the task that entered (only it may exit)
        self._starting: Callable[[], object] | None = None  # cancels a start not yet made
        self._asyncio = False
        self._finished = False  # closed: links closed, jobs cancelled
        self._changed = Wakeup()
        self._state = self._lifecycle.state
        #: Why the connection is, or was last, in a failed state (kept after close).
        self._failure: ConnectionFailed | None = None
        #: Transitions taken while an application request (rotate, reset) is asked for.
        self._taken: list[TransitionRecord] | None = None
        spec = self._lifecycle.machine.spec
        #: The state the first transition dials in: entering it again is a reconnect.
        self._dial_state = next((t.dest for t in spec.transitions_from(spec.initial)), None)

    def __repr__(self) -> str:
        return f"<LiveConnection {safe_url(self.url)} {self.state}>"

    # -- lifetime ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered_by is not None:
            raise UsageError("a LiveConnection can be entered only once")
        self._entered_by = anyio.get_current_task().id
        self._asyncio = sniffio.current_async_library() == "asyncio"
        if self._asyncio:
            # The engine starts jobs from loop callbacks (a timer, bytes received),
            # where no task tells anyio which library runs: say it in the context
            # they inherit.  (anyio.run says so already; asyncio.run does not.)
            sniffio.current_async_library_cvar.set("asyncio")
        clock = asyncio.get_running_loop().time if self._asyncio else anyio.current_time
        self._engine.clock = clock
        self._started_at = clock()
        if self._trace_path is not None:
            # An OSError is raised.  Stats records and heartbeat round trips: docs/diagnostics.md
            try:
                self._trace = TraceWriter(
                    self._trace_path,
                    self._started_at,
                    stats=self.stats,
                    clock=clock,
                    interval=self.config.trace_stats_interval,
                )
            except BaseException:
                self._abandon()
                raise
            engine = self._engine
            engine.on_heartbeat_ack = both(engine.on_heartbeat_ack, self._trace.heartbeat_acked)
        # Started soon, not now: callbacks registered right after entering see the first
        # transition too.  With a pacer (a fleet's), the first dial takes a slot of it
        # like any reconnect, and goes when the pacer lets it (pacing.py): a fleet of
        # 10,000 opens paced, whatever its event loop does.
        pacer = self._lifecycle.pacer
        start_at = clock() if pacer is None else pacer.reserve(clock(), clock())
        if self._asyncio:
            # Jobs are asyncio tasks the connection owns and joins (no task group:
            # _runtime/jobs.py says why); the timer and the start are loop callbacks.
            self._jobs.own()
            loop = asyncio.get_running_loop()
            self._engine.timer = LoopTimer(loop, self._engine.on_timer)
            handle = loop.call_at(start_at, self._start_in_slot, loop, start_at)
            self._starting = handle.cancel
        else:
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
            self._jobs.bind(task_group)
            self._engine.timer = TaskTimer(self._jobs, self._engine.on_timer)
            self._starting = self._jobs.start("start", self._start, start_at).cancel
        return self

    def _abandon(self) -> Endpoint | None:
        """It will never run (entering it failed, or a fleet built it for an account
        another worker owns): its endpoint, returned, counts it no more."""
        return self._lifecycle.abandon(self._engine.clock())

    def _start_in_slot(self, loop: asyncio.AbstractEventLoop, slot: float) -> None:
        later = self._paced_later(slot)
        if later is None:
            self._engine.start()
        else:
            self._starting = loop.call_at(later, self._start_in_slot, loop, later).cancel

    async def _start(self, slot: float | None) -> None:
        while slot is not None:
            await anyio.sleep_until(slot)
            slot = self._paced_later(slot)
        self._engine.start()

    def _paced_later(self, slot: float) -> float | None:
        """None if the first dial, whose ``slot`` came, goes now, else the slot it
        waits for instead.  (A loop may wake a timer up to its clock's resolution
        early: the slot's time counts, as in ``LoopTimer``.)"""
        pacer = self._lifecycle.pacer
        return None if pacer is None else pacer.due(max(self._engine.clock(), slot))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._entered_by is not None
        if anyio.get_current_task().id != self._entered_by:
            # A task group can only be left by the task that entered it: close the
            # connection (that works from any task), arm nothing, and say so.
            with anyio.CancelScope(shield=True):
                await self.close()
            raise UsageError(
                "a LiveConnection must be left (async with, AsyncExitStack) by the task "
                "that entered it; it is closed, and that task must still leave it"
            )
        task_group = self._task_group
        with anyio.CancelScope(shield=True):
            await self.close()
            # Handlers get close_timeout to finish; every other job is cancelled already.
            if task_group is not None:
                task_group.cancel_scope.deadline = anyio.current_time() + self.config.close_timeout
        try:
            if task_group is None:
                await self._jobs.join(self.config.close_timeout, _CLOSE_MARGIN)
            else:
                # The body's own exception is not passed in: it propagates as it is,
                # never wrapped in an exception group by the connection's task group.
                await task_group.__aexit__(None, None, None)
        finally:
            if self._trace is not None:
                self._trace.close()
        crash = self._engine.crash
        if crash is not None and exc is None:
            raise crash
        return None

    async def close(self) -> None:
        """Close from any state: the link closes within ``close_timeout`` (aborted at
        the deadline), every job is cancelled, and the state ends CLOSED.

        Idempotent.  Returns once the connection is closed.
        """
        if self._entered_by is None:
            raise UsageError("the connection was never entered (use async with)")
        engine, jobs, inbox = self._engine, self._jobs, self._inbox
        if not self._finished:
            engine.close()
            with anyio.move_on_after(self.config.close_timeout + _CLOSE_MARGIN):
                while not engine.idle:
                    await self._changed.wait()
            self._finish()
        with anyio.move_on_after(_CLOSE_MARGIN):
            while jobs.alive > inbox.handlers_running:  # cancelled: joined in a moment
                await self._changed.wait()

    def abort(self, reason: str = "aborted by the application") -> None:
        """Close now, abortively, from any state: every link is reset (TCP RST through
        ``SO_LINGER`` 0), so nothing already written but still queued, in this
        process or in the kernel, reaches the peer later, and no close frame is
        sent; jobs are cancelled and the state ends CLOSED.  Synchronous;
        idempotent; a no-op before ``async with``.

        For a worker that lost an account (a cluster's fence): bytes written
        before the abort cannot be retransmitted after a partition heals.
        """
        if self._entered_by is None or self._finished:
            return
        self._engine.abort(reason)
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._starting is not None:
            self._starting()  # a paced first dial whose slot had not come
        engine = self._engine
        engine.abort_links()
        if engine.timer is not None:
            engine.timer.stop()
        engine.cancel_jobs()
        closed = ConnectionClosed(f"the connection is {self.state}")
        for handle in engine.finish():
            if isinstance(handle, PendingRequest):
                handle.fail(closed)
        self._inbox.close()
        self._notify()

    async def _open_link(self, link: Link) -> None:
        """Open the byte link under ``link``: an asyncio protocol where the transport
        and the backend allow it (no task), else an anyio stream with its jobs."""
        transport = self._transport
        fast_path = self._fast_path
        if self._asyncio and fast_path is not None:
            await fast_path.open_asyncio(self._target, functools.partial(AsyncioLink, link))
        else:
            stream = await transport.open_stream(self._target)
            StreamLink(stream, link, self._jobs)

    def _job_crashed(self, job: Job, exc: Exception) -> None:
        self._engine.job_crashed(job, exc)

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The current state's name (e.g. ``"CONNECTED"``).

        It changes once a transition was fully carried out (the old state's tasks
        cancelled, the new state's started, stats and trace updated).
        """
        return self._state

    @property
    def spec(self) -> Spec:
        """The lifecycle spec this connection runs (its states, roles and transitions)."""
        return self._lifecycle.machine.spec

    @property
    def machine(self) -> LifecycleMachine:
        """The lifecycle Machine this connection is a model of: the ``machine=`` given,
        else the packaged spec's, ONE for every connection of the process
        (docs/architecture.md, rule 5: about 0.5 KiB per connection, where a Machine of
        its own costs about 300 KiB)."""
        return self._lifecycle.machine

    @property
    def failure(self) -> ConnectionFailed | None:
        """Why the connection is in a failed state (FAILED), or why it was when it
        was closed from there; None otherwise (it is reset by the next connect)."""
        return self._failure

    @property
    def needs_reset(self) -> bool:
        """True while the connection is FAILED and will not leave it by itself: after a
        terminal failure (or with ``Config.failed_retry`` off), once its escalation,
        if any, did not recover.  :meth:`reset` or :meth:`close` end it."""
        return self.state in self.spec.failed_states and self._lifecycle.needs_reset

    async def wait_for(self, *states: str, raise_on_failed: bool = True) -> str:
        """Wait until the state is one of ``states``; return it.

        Waits through outages of any length: a FAILED connection that will retry
        by itself is waited for.  Raises :class:`ConnectionFailed` (with the
        reason) once it :attr:`needs_reset`, unless FAILED is among ``states`` or
        ``raise_on_failed`` is False; :class:`ConnectionClosed` if it closes
        (chained from the exception that closed it, if one did).  Raises
        ValueError for a name the spec does not have.
        """
        unknown = set(states) - set(self._lifecycle.machine.states)
        if unknown or not states:
            raise ConfigError(
                "states",
                f"unknown state(s) {sorted(unknown)}; known: "
                f"{', '.join(self._lifecycle.machine.states)}",
            )
        while True:
            state = self.state
            if state in states:
                return state
            if raise_on_failed and self.needs_reset and self._failure is not None:
                raise self._failure
            if self._lifecycle.machine.states[state].final or self._finished:
                raise ConnectionClosed(f"the connection is {state}") from self._engine.crash
            await self._changed.wait()

    async def wait_changed(self) -> None:
        """Return after the next event the connection handled (a transition, a message,
        a heartbeat, ...).

        Raises :class:`ConnectionClosed` once the connection is closed (chained
        from the exception that closed it, if one did), so a loop around it never spins.
        """
        if self._finished or self._lifecycle.is_final:
            raise ConnectionClosed(f"the connection is {self.state}") from self._engine.crash
        await self._changed.wait()

    def on_transition(self, callback: Callable[[TransitionRecord], None]) -> None:
        """Call ``callback(record)`` synchronously after every transition.

        It runs inside the engine: keep it short and never block.  If it raises,
        the connection closes (CLOSED; :meth:`send` and :meth:`wait_for` raise
        :class:`~fsm_live.errors.ConnectionClosed` chained from it) and
        leaving ``async with`` raises the original exception.
        """
        self._callbacks.append(callback)

    def on_heartbeat_ack(self, callback: Callable[[float, float], None]) -> None:
        """Call ``callback(at, rtt)`` synchronously after every heartbeat ack: when (the
        event loop's clock) and the round trip in seconds.

        For observers of round trips (a metrics collector): it runs inside the
        engine, so keep it short and never raise.  Without one, an ack costs one
        ``is None`` check more.
        """
        self._engine.on_heartbeat_ack = both(self._engine.on_heartbeat_ack, callback)

    @property
    def started_at(self) -> float:
        """When the connection was entered (the event loop's clock); trace ``t`` is
        relative to it."""
        return self._started_at

    async def wait_connected(self) -> None:
        """Wait until connected (the spec's success state); raises as :meth:`wait_for` does."""
        await self.wait_for(*self.spec.success_states)

    # -- traffic -----------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        """Send a message: at once while connected, else once connected, in order.

        Nothing ``send()`` accepted is dropped silently (docs/protocol.md): a frame
        still in this process when its link breaks is sent again, in order, on the
        next link; with a protocol that acknowledges (lwp; json with ``ack_key``)
        a frame is kept until acknowledged, for up to ``Config.ack_timeout``, and
        sent again after each reconnect until then (at-least-once).

        Waits only while the link's write buffer is above its high mark (the peer
        is slow to read).  Raises TypeError/ValueError if the protocol cannot
        encode it, :class:`~fsm_live.errors.BufferFull` when ``outbound_buffer``
        frames are live (waiting for a link, in the write buffer, or awaiting an
        acknowledgement), :class:`ConnectionFailed` once it :attr:`needs_reset`
        (while FAILED and retrying by itself, messages wait), and
        :class:`ConnectionClosed` once closed or no longer ``owned``.
        """
        encode_tracked = self._encode_tracked
        ack_id = None
        if encode_tracked is None:
            frame = self.adapter.encode(message)
        else:
            frame, ack_id = encode_tracked(message, request=False)
        self._check_open()
        engine = self._engine
        if ack_id is None:
            engine.send(frame)
        else:
            engine.send(frame, ack_id=ack_id, deadline=engine.clock() + self.config.ack_timeout)
        while engine.writing_paused and not self._finished:
            await self._changed.wait()

    # The timeout is the frame's deadline in the delivery ledger (past it, it is not sent
    # again), which a caller's cancel scope cannot express: hence the parameter.
    async def request(self, message: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Send ``message`` and return the peer's acknowledgement of it (lwp: its reply;
        json with ``ack_key``: the object with the same id).

        At-least-once across reconnects: the frame is kept until acknowledged and
        sent again, with the same id, in order, on every new link until then (a
        peer may see it twice and should de-duplicate by id).  ``timeout`` seconds
        (default ``Config.ack_timeout``) bound the whole wait, reconnects included.

        Raises :class:`~fsm_live.errors.UsageError` if the protocol does not
        acknowledge, :class:`~fsm_live.errors.RequestTimeout` when no
        acknowledgement came in time, and what :meth:`send` raises.
        """
        encode_tracked = self._encode_tracked
        if encode_tracked is None:
            raise UsageError(
                f"the {self.adapter.name!r} protocol has no acknowledgements: request() needs "
                "one that has (lwp, or JsonProtocol(ack_key=...))"
            )
        wait = self.config.ack_timeout if timeout is None else timeout
        if not 0 < wait < math.inf:
            raise ConfigError("timeout", f"must be a positive number of seconds, got {timeout!r}")
        frame, ack_id = encode_tracked(message, request=True)
        self._check_open()
        engine = self._engine
        pending = PendingRequest()
        engine.send(frame, ack_id=ack_id, deadline=engine.clock() + wait, handle=pending)
        return await pending.wait()

    def _check_open(self) -> None:
        """Raise what ``send()`` raises in a state that takes no message, or once no
        longer ``owned`` (the connection is then aborted)."""
        owned = self._engine.owned
        if owned is not None and not owned():
            self.abort("no longer owned by this worker")
            raise ConnectionClosed("the connection is no longer owned by this worker")
        state = self._lifecycle.machine.states[self._state]
        if state.failed and self._lifecycle.needs_reset and self._failure is not None:
            raise self._failure
        if state.final or self._finished:
            raise ConnectionClosed("the connection is closed") from self._engine.crash

    def __aiter__(self) -> AsyncIterator[Any]:
        """Inbound messages in order, de-duplicated where the protocol asks; ends once
        the connection is closed and every message received was taken.

        Only without ``on_message``.
        """
        if self._inbox.handler is not None:
            raise UsageError("this connection delivers to on_message; it is not iterable")
        return aiter(self._inbox)

    async def rotate(self, reason: str = "rotate") -> TransitionRecord:
        """Reconnect on purpose (no failure counted, no backoff).  Only while CONNECTED.

        The rotation happens at once; returns its transition.  Raises
        :class:`TransitionRefused` if the state does not allow it (say, a
        concurrent call rotated first: the connection is CONNECTING).
        """
        return await self._request("rotate", functools.partial(self._engine.rotate, reason))

    async def reset(self, reason: str = "reset by the application") -> TransitionRecord:
        """Leave FAILED: clear the failure count and retry.  Only while FAILED.

        Needed after a terminal failure (see :attr:`needs_reset`); a FAILED
        connection reached by retryable failures retries by itself.  Returns the
        transition; raises :class:`TransitionRefused` if the state does not allow it.
        """
        return await self._request("reset", functools.partial(self._engine.reset, reason))

    async def _request(self, trigger: str, ask: Callable[[], None]) -> TransitionRecord:
        """Ask the engine for a transition by ``trigger``: it is taken at once, or refused."""
        await anyio.lowlevel.checkpoint()
        if self._finished or trigger not in self._lifecycle.machine.allowed[self.state]:
            raise TransitionRefused(self.state, trigger)
        taken: list[TransitionRecord] = []
        self._taken = taken
        try:
            ask()
        finally:
            self._taken = None
        record = next((r for r in taken if r.trigger == trigger), None)
        if record is None:
            raise TransitionRefused(self.state, trigger)
        return record

    # -- observability -----------------------------------------------------------------

    def stats(self) -> Stats:
        """A frozen snapshot of the connection's figures."""
        transitions = self._counters.transitions
        return self._counters.snapshot(
            state=self.state,
            time_in_state=max(
                0.0, self._engine.clock() - max(self._lifecycle.entered_at, self._started_at)
            ),
            reconnects=sum(
                n
                for (source, _, dest), n in transitions.items()
                if dest == self._dial_state and source != self.spec.initial
            ),
            consecutive_failures=self._lifecycle.failures,
            buffered=len(self._lifecycle.ledger),
            tasks_alive=self._jobs.alive,
        )

    def _notify(self) -> None:
        self._changed.notify()

    def _on_transition(self, record: TransitionRecord) -> None:
        """Called by the engine after every transition (its effects carried out)."""
        self._state = record.dest
        counters = self._counters
        counters.transitions[(record.source, record.trigger, record.dest)] += 1
        if record.error_class is not None:
            counters.failures[record.error_class] += 1
            counters.last_error = record.reason
        dest = self._lifecycle.machine.states[record.dest]
        if dest.success:
            counters.connects += 1
            self._failure = None
        if dest.failed and self._lifecycle.last_failure is not None:
            self._failure = ConnectionFailed(self._lifecycle.last_failure)
        if self._trace is not None:
            self._trace.write(record)
        transitions_logger.log(
            logging.getLevelName(dest.log_level),
            "%s: %s -> %s (%s)%s%s",
            safe_url(self.url),
            record.source,
            record.dest,
            record.trigger,
            f": {record.reason}" if record.reason else "",
            " [success]" if dest.success else "",
        )
        if self._taken is not None:
            self._taken.append(record)
        for callback in self._callbacks:
            try:
                callback(record)
            except Exception as exc:
                transitions_logger.exception(
                    "%s: an on_transition callback raised %s; closing",
                    safe_url(self.url),
                    type(exc).__name__,
                )
                self._engine.crashed(exc)


#: ``connect(url, **options)`` makes a :class:`LiveConnection`, to use with ``async
#: with``.  It is the class itself (as websockets' ``connect`` is), so every keyword
#: is typed and checked.
connect = LiveConnection
