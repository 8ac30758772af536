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
any state: every task is cancelled and joined, the socket is closed within
``close_timeout``, and the state ends CLOSED.  Works on anyio's asyncio and
trio backends.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from fsm_live.config import Config
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.events import Close, Event, Reset, Rotate, Start
from fsm_live.core.lifecycle import Lifecycle, LifecycleMachine
from fsm_live.core.pacing import ReconnectPacer
from fsm_live.credentials import CredentialsProvider
from fsm_live.dedup import Deduplicator
from fsm_live.errors import (
    ConnectionClosedByApp,
    ConnectionFailed,
    TransitionRefused,
)
from fsm_live.inbox import Handler, Inbox
from fsm_live.outbox import Outbox
from fsm_live.protocols import ProtocolAdapter, get_protocol
from fsm_live.redaction import safe_url
from fsm_live.runner import Driver
from fsm_live.spec import Spec
from fsm_live.stats import Counters, Stats
from fsm_live.tasks import SessionTasks
from fsm_live.trace import TraceWriter
from fsm_live.transport.base import Transport
from fsm_live.transport.url import check_url
from fsm_live.wakeup import Wakeup

__all__ = ("TRANSITIONS_LOGGER", "LiveConnection", "connect", "default_machine")

#: Every transition is logged here, at the level the spec gives its destination state.
TRANSITIONS_LOGGER = "fsm_live.transitions"
transitions_logger = logging.getLogger(TRANSITIONS_LOGGER)


@functools.cache
def default_machine() -> LifecycleMachine:
    """The one Machine built from the packaged spec, shared by every connection."""
    return LifecycleMachine(Spec.default())


def connect(url: str, **options: Any) -> LiveConnection:
    """A :class:`LiveConnection` to ``url``; use it with ``async with``.  See its options."""
    return LiveConnection(url, **options)


class LiveConnection:
    """One WebSocket client connection kept alive by the lifecycle machine.

    Options (all keyword-only):

    * ``protocol``: an adapter name (``"ping"``, ``"json"``) or a
      :class:`~fsm_live.protocols.ProtocolAdapter`;
    * ``config``: a :class:`~fsm_live.config.Config` (defaults: the seed's);
    * ``credentials``: a :class:`~fsm_live.credentials.CredentialsProvider` for
      handshake headers, refresh after an auth failure, and escalation in FAILED;
    * ``transport``: a :class:`~fsm_live.transport.base.Transport` (default: the
      websockets client);
    * ``ssl``: an ``ssl.SSLContext`` for ``wss://`` (default: verification on);
    * ``on_message``: an async handler; without one, iterate the connection;
    * ``trace``: a path; every transition is appended to it as a JSON line;
    * ``machine``: a shared :class:`~fsm_live.core.lifecycle.LifecycleMachine`
      (default: the packaged spec's); ``random``: the jitter source;
    * ``pacer``: a :class:`~fsm_live.core.pacing.ReconnectPacer` shared with
      other connections of this event loop, bounding their reconnect attempts
      per second (a :class:`~fsm_live.fleet.Fleet` passes its own).

    Raises :class:`~fsm_live.errors.ConfigError` for a URL a client cannot dial
    (not ``ws://`` or ``wss://``, no host, a port outside 1-65535, a fragment),
    naming what is wrong, or for an unknown protocol name.
    """

    def __init__(
        self,
        url: str,
        *,
        protocol: str | ProtocolAdapter = "ping",
        config: Config | None = None,
        credentials: CredentialsProvider | None = None,
        transport: Transport | None = None,
        ssl: ssl.SSLContext | None = None,
        on_message: Handler | None = None,
        trace: str | Path | None = None,
        machine: LifecycleMachine | None = None,
        random: Callable[[], float] | None = None,
        pacer: ReconnectPacer | None = None,
    ) -> None:
        self.url = check_url(url)
        self.config = config or Config()
        self.adapter = get_protocol(protocol) if isinstance(protocol, str) else protocol
        if transport is None:
            from fsm_live.transport.websocket import WebSocketTransport

            transport = WebSocketTransport()
        self._lifecycle = Lifecycle(machine or default_machine(), self.config, random=random,
                                    can_refresh_credentials=credentials is not None,
                                    pacer=pacer)
        self._counters = Counters()
        self._trace_path = trace
        self._trace: TraceWriter | None = None
        self._started_at = 0.0
        self._inbox = Inbox(self.config.message_concurrency, on_message)
        self._outbox = Outbox(self.config.outbound_buffer)
        self._driver = Driver(self._lifecycle, {}, join_timeout=self.config.close_timeout,
                              classify_crash=self._lifecycle.machine.classifier.classify_exception)
        self._tasks = SessionTasks(
            url=url, transport=transport, adapter=self.adapter, config=self.config,
            lifecycle=self._lifecycle, driver=self._driver,
            classifier=self._lifecycle.machine.classifier, counters=self._counters,
            outbox=self._outbox, inbox=self._inbox,
            dedup=Deduplicator(self.config.message_expire_time, self.config.dedup_max_entries),
            credentials=credentials, ssl=ssl,
        )
        self._driver.bodies = self._tasks.bodies()
        self._driver.observers.append(self._on_transition)
        self._callbacks: list[Callable[[TransitionRecord], None]] = []
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._finished = False  # the driver returned; its tasks and link are released
        self._finished_wakeup = Wakeup()
        self._state = self._lifecycle.state
        #: Why the connection is, or was last, in a failed state (kept after close).
        self._failure: ConnectionFailed | None = None
        #: An exception raised by an on_transition callback, or by the driver itself:
        #: the connection closed because of it, and __aexit__ raises it.
        self._crash: BaseException | None = None
        #: Application requests (rotate, reset) waiting for their transition.
        self._requests: list[_Request] = []

    def __repr__(self) -> str:
        return f"<LiveConnection {safe_url(self.url)} {self.state}>"

    # -- lifetime ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("a LiveConnection can be entered only once")
        self._started_at = anyio.current_time()
        self._lifecycle.entered_at = self._started_at
        async with AsyncExitStack() as stack:
            if self._trace_path is not None:
                self._trace = stack.enter_context(TraceWriter(self._trace_path,
                                                              self._started_at))
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            self._tasks.links = self._task_group
            self._inbox.bind(self._task_group)
            await self._task_group.start(self._run_driver)
            await self._driver.post(Start(anyio.current_time()))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._stack is not None
        assert self._task_group is not None
        with anyio.CancelScope(shield=True):
            await self.close()
            # Link holders close their sockets within close_timeout; handlers get as long.
            self._task_group.cancel_scope.deadline = (anyio.current_time()
                                                      + self.config.close_timeout)
        # The body's own exception is not passed in: it propagates as it is, never
        # wrapped in an exception group by the connection's task group.
        await self._stack.__aexit__(None, None, None)
        if self._crash is not None and exc is None:
            raise self._crash
        return None

    async def _run_driver(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await self._driver.run(task_status=task_status)
        except Exception as exc:
            # A bug (ours, or a callback's): never leave waiters on a dead driver.  Its
            # tasks are cancelled and joined; the lifecycle ends in its final state.
            while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]  # the driver's task group wrapped it
            self._crash = self._crash or exc
            transitions_logger.exception("%s: the connection's driver crashed",
                                         safe_url(self.url))
        finally:
            self._tasks.release_link()
            self._inbox.close()
            self._finished = True
            self._finished_wakeup.notify()
            self._settle_requests()

    async def close(self) -> None:
        """Close from any state: cancel and join every task, close the socket, end CLOSED.

        Idempotent.  Returns once the lifecycle is final (CLOSED).
        """
        if self._stack is None:
            raise RuntimeError("the connection was never entered (use async with)")
        if not self._finished:
            await self._driver.post(Close(anyio.current_time()))
            while not self._finished:
                await self._finished_wakeup.wait()

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The current state's name (e.g. ``"CONNECTED"``).

        It changes once a transition was fully executed (the old state's tasks
        joined, the new state's started, stats and trace updated).
        """
        return self._state

    @property
    def spec(self) -> Spec:
        """The lifecycle spec this connection runs (its states, roles and transitions)."""
        return self._lifecycle.machine.spec

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
        return self.state in self._lifecycle.machine.spec.failed_states \
            and self._lifecycle.needs_reset

    async def wait_for(self, *states: str, raise_on_failed: bool = True) -> str:
        """Wait until the state is one of ``states``; return it.

        Waits through outages of any length: a FAILED connection that will retry
        by itself is waited for.  Raises :class:`ConnectionFailed` (with the
        reason) once it :attr:`needs_reset`, unless FAILED is among ``states`` or
        ``raise_on_failed`` is False; :class:`ConnectionClosedByApp` if it closes
        (chained from the exception that closed it, if one did).  Raises
        ValueError for a name the spec does not have.
        """
        unknown = set(states) - set(self._lifecycle.machine.states)
        if unknown or not states:
            raise ValueError(f"unknown state(s) {sorted(unknown)}; known: "
                             f"{', '.join(self._lifecycle.machine.states)}")
        while True:
            state = self.state
            if state in states:
                return state
            if raise_on_failed and self.needs_reset and self._failure is not None:
                raise self._failure
            if self._lifecycle.machine.states[state].final or self._finished:
                raise ConnectionClosedByApp(f"the connection is {state}") from self._crash
            await self._driver.wait_changed()

    async def wait_changed(self) -> None:
        """Return after the next transition or event the connection handled (e.g. the
        escalation in FAILED gave up).

        Raises :class:`ConnectionClosedByApp` once the connection is closed (chained
        from the exception that closed it, if one did), so a loop around it never spins.
        """
        if self._finished:
            raise ConnectionClosedByApp(f"the connection is {self.state}") from self._crash
        await self._driver.wait_changed()

    def on_transition(self, callback: Callable[[TransitionRecord], None]) -> None:
        """Call ``callback(record)`` synchronously after every transition.

        It runs inside the driver: keep it short and never block.  If it raises,
        the connection closes (CLOSED; :meth:`send` and :meth:`wait_for` raise
        :class:`~fsm_live.errors.ConnectionClosedByApp` chained from it) and
        leaving ``async with`` raises the original exception.
        """
        self._callbacks.append(callback)

    @property
    def started_at(self) -> float:
        """When the connection was entered (``anyio.current_time()``); trace ``t`` is
        relative to it."""
        return self._started_at

    async def wait_connected(self) -> None:
        """Wait until connected (the spec's success state); raises as :meth:`wait_for` does."""
        await self.wait_for(*self._lifecycle.machine.spec.success_states)

    # -- traffic -----------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        """Queue a message; it is sent in order once CONNECTED (at once if connected).

        Raises TypeError/ValueError if the protocol cannot encode it,
        :class:`~fsm_live.errors.BufferFull` when ``outbound_buffer`` messages are
        waiting, :class:`ConnectionFailed` once it :attr:`needs_reset` (while
        FAILED and retrying by itself, messages are buffered), and
        :class:`ConnectionClosedByApp` once closed.
        """
        frame = self.adapter.encode(message)
        if self.needs_reset and self._failure is not None:
            raise self._failure
        if self._lifecycle.machine.states[self.state].final or self._finished:
            raise ConnectionClosedByApp("the connection is closed") from self._crash
        self._outbox.put(frame)
        self._driver.request("flush")  # an OnDemand task: it runs only with frames to send

    def __aiter__(self) -> AsyncIterator[Any]:
        """Inbound messages in order, de-duplicated; ends when the connection closes.

        Only without ``on_message``.
        """
        if self._inbox.handler is not None:
            raise RuntimeError("this connection delivers to on_message; it is not iterable")
        return aiter(self._inbox)

    async def rotate(self, reason: str = "rotate") -> TransitionRecord:
        """Reconnect on purpose (no failure counted, no backoff).  Only while CONNECTED.

        Returns the rotation's transition once it was taken.  Concurrent calls
        share one rotation (each returns its record).  Raises
        :class:`TransitionRefused` if the state does not allow it, now or by the
        time it would be taken (the connection was lost meanwhile, say).
        """
        return await self._request(
            "rotate", Rotate(anyio.current_time(), self._lifecycle.generation, reason))

    async def reset(self, reason: str = "reset by the application") -> TransitionRecord:
        """Leave FAILED: clear the failure count and retry.  Only while FAILED.

        Needed after a terminal failure (see :attr:`needs_reset`); a FAILED
        connection reached by retryable failures retries by itself.  Returns the
        transition once taken; raises :class:`TransitionRefused` if the state does
        not allow it.
        """
        return await self._request("reset", Reset(anyio.current_time(), reason))

    async def _request(self, trigger: str, event: Event) -> TransitionRecord:
        """Post an application event and wait for the transition it asks for.

        A request made while an equal one is pending joins it.
        """
        if self._finished or trigger not in self._lifecycle.machine.allowed[self.state]:
            raise TransitionRefused(self.state, trigger)
        request = next((r for r in self._requests if r.trigger == trigger), None)
        if request is None:
            request = _Request(trigger)
            self._requests.append(request)
            await self._driver.post(event)
        await request.done.wait()
        if request.record is None:
            raise TransitionRefused(self.state, trigger)
        return request.record

    def _settle_requests(self, record: TransitionRecord | None = None) -> None:
        """A transition was taken (or the driver ended): every pending request is
        answered, by this record if it took the trigger asked for, else refused."""
        requests, self._requests = self._requests, []
        for request in requests:
            if record is not None and record.trigger == request.trigger:
                request.record = record
            request.done.set()

    # -- observability -----------------------------------------------------------------

    def stats(self) -> Stats:
        """A frozen snapshot of the connection's figures."""
        counters = self._counters
        transitions = dict(counters.transitions)
        return Stats(
            state=self.state,
            time_in_state=max(0.0, anyio.current_time() - self._lifecycle.entered_at),
            transitions=transitions,
            connects=counters.connects,
            reconnects=sum(n for (_, trigger, _), n in transitions.items()
                           if trigger in ("retry", "rotate")),
            failures=dict(counters.failures),
            consecutive_failures=self._lifecycle.failures,
            last_error=counters.last_error,
            heartbeats_sent=counters.heartbeats_sent,
            heartbeats_acked=counters.heartbeats_acked,
            heartbeat_rtt=counters.heartbeat_rtt,
            messages_in=counters.messages_in,
            messages_out=counters.messages_out,
            duplicates_dropped=counters.duplicates_dropped,
            token_refreshes=counters.token_refreshes,
            token_refresh_failures=counters.token_refresh_failures,
            cookie_refreshes=counters.cookie_refreshes,
            buffered=len(self._outbox),
            tasks_alive=self._driver.tasks_alive,
            stuck_tasks=self._driver.stuck_tasks,
        )

    def _on_transition(self, record: TransitionRecord) -> None:
        self._state = record.dest
        states = self._lifecycle.machine.states
        counters = self._counters
        counters.transitions[(record.source, record.trigger, record.dest)] += 1
        if record.error_class is not None:
            counters.failures[record.error_class] += 1
            counters.last_error = record.reason
        dest = states[record.dest]
        if dest.success:
            counters.connects += 1
            self._failure = None
        else:
            self._tasks.release_link()
        if dest.failed and self._lifecycle.last_failure is not None:
            self._failure = ConnectionFailed(self._lifecycle.last_failure)
        if self._trace is not None:
            self._trace.write(record)
        transitions_logger.log(logging.getLevelName(dest.log_level), "%s: %s -> %s (%s)%s%s",
                   safe_url(self.url), record.source, record.dest, record.trigger,
                   f": {record.reason}" if record.reason else "",
                   " [success]" if dest.success else "")
        self._settle_requests(record)
        for callback in self._callbacks:
            try:
                callback(record)
            except Exception as exc:
                self._crashed_in_callback(exc)

    def _crashed_in_callback(self, exc: Exception) -> None:
        """An on_transition callback raised: close the connection, keep the exception."""
        if self._crash is None:
            self._crash = exc
            transitions_logger.error("%s: an on_transition callback raised %s; closing",
                                     safe_url(self.url), type(exc).__name__)
            self._driver.post_nowait(Close(anyio.current_time(),
                                           f"an on_transition callback raised "
                                           f"{type(exc).__name__}"))


class _Request:
    """An application request (rotate, reset) waiting for its transition."""

    __slots__ = ("done", "record", "trigger")

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger
        self.record: TransitionRecord | None = None
        self.done = anyio.Event()
