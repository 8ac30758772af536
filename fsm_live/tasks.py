"""The bodies of a live connection's tasks, and the link they share.

Each spec task (``dial``, ``reader``, ``heartbeat``, ...) is a method of
:class:`SessionTasks`.  Bodies never fire triggers: they post events to the
driver, tagged with their generation.  A body returns when it has nothing (more)
to do; the driver cancels and joins it when its state is left.

The open link outlives the ``dial`` task that opened it, so it is held by a
separate *link holder* task in the connection's task group: it enters the
transport's context, hands the link out, and leaves the context (closing the
socket, bounded by ``close_timeout``) when :meth:`SessionTasks.release_link` is
called, which the connection does on every transition that does not go to a
success state.
"""

from __future__ import annotations

import logging
import ssl
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import anyio
import anyio.abc
import attrs

from fsm_live.config import Config
from fsm_live.core.classify import Classifier
from fsm_live.core.events import (
    EscalationFinished,
    Failed,
    HeartbeatAcked,
    MessageReceived,
    Opened,
    ReadingPaused,
    ReadingResumed,
    Rotate,
)
from fsm_live.core.lifecycle import Lifecycle
from fsm_live.credentials import CredentialsProvider, provider_failures
from fsm_live.dedup import Deduplicator
from fsm_live.errors import TransportError
from fsm_live.inbox import Inbox
from fsm_live.outbox import Outbox
from fsm_live.protocols.base import ProtocolAdapter
from fsm_live.runner import Driver, OnDemand, Periodic, TaskBody
from fsm_live.stats import Counters
from fsm_live.transport.base import ConnectOptions, Link, Message, Transport

__all__ = ("SessionTasks",)

logger = logging.getLogger("fsm_live")

#: App-level heartbeats awaiting their ack; older ones are forgotten.
_PENDING_HEARTBEATS = 16
#: Seconds the flush task waits for more frames before it returns.
_FLUSH_LINGER = 1.0


@attrs.define
class _HeldLink:
    link: Link
    release: anyio.Event = attrs.Factory(anyio.Event)
    close_code: int = 1000


@attrs.define(kw_only=True)
class SessionTasks:
    """Everything the task bodies of one connection share."""

    url: str
    transport: Transport
    adapter: ProtocolAdapter
    config: Config
    lifecycle: Lifecycle
    driver: Driver
    classifier: Classifier
    counters: Counters
    outbox: Outbox
    inbox: Inbox
    dedup: Deduplicator
    credentials: CredentialsProvider | None = None
    ssl: ssl.SSLContext | None = None
    links: anyio.abc.TaskGroup | None = None
    _held: _HeldLink | None = None
    _early_frames: list[Message] = attrs.Factory(list)
    _token_refresh_failed: bool = False
    _warned_generation: int = -1  # the session whose slow application was logged
    _pending_heartbeats: OrderedDict[str, float] = attrs.Factory(OrderedDict)

    def bodies(self) -> dict[str, TaskBody]:
        """The task bodies by spec task name.

        Token and cookie refresh run only with a provider that can refresh them
        (``refresh_token`` / ``refresh_cookies``); otherwise they never run.  The
        flush runs on demand, while there are frames to send.
        """
        config = self.config
        can = {name: callable(getattr(self.credentials, name, None))
               for name in ("refresh_token", "refresh_cookies")}
        return {
            "dial": self.dial,
            "reader": self.reader,
            "heartbeat": self.heartbeat,
            "token_refresh": Periodic(self.refresh_token, self._token_refresh_delay)
            if can["refresh_token"] else _NOTHING_TO_DO,
            "cookie_refresh": Periodic(self.refresh_cookies,
                                       lambda: config.cookie_refresh_interval)
            if can["refresh_cookies"] else _NOTHING_TO_DO,
            "cleanup": Periodic(self.cleanup, lambda: config.cleanup_interval),
            "flush": OnDemand(self.flush, lambda: len(self.outbox) > 0),
            "escalation": self.escalation,
        }

    # -- the link ----------------------------------------------------------------------

    def release_link(self, code: int = 1000) -> None:
        """Close the current link (in the background, bounded by ``close_timeout``)."""
        held, self._held = self._held, None
        if held is not None:
            held.close_code = code
            held.release.set()

    async def _hold_link(self, options: ConnectOptions, *,
                         task_status: anyio.abc.TaskStatus[Link]) -> None:
        async with self.transport.connect(self.url, options) as link:
            held = _HeldLink(link)
            self.release_link()  # at most one link at a time
            self._held = held
            task_status.started(link)
            await held.release.wait()
            await link.close(held.close_code)

    def _link(self) -> Link:
        if self._held is None:
            raise TransportError("no open link", close_code=1006)
        return self._held.link

    async def _fail(self, generation: int, error: TransportError) -> None:
        failure = self.classifier.classify_error(error)
        self.counters.last_error = str(failure)
        await self.driver.post(Failed(anyio.current_time(), generation, failure))

    # -- task bodies -------------------------------------------------------------------

    async def dial(self, generation: int) -> None:
        """Open the link and run the protocol's registration; post Opened or Failed.

        A credentials provider that raises fails the attempt like any transport
        error (kind ``credentials``; see :func:`provider_failures`).
        """
        assert self.links is not None, "SessionTasks.links is not bound"
        try:
            options = self._connect_options(await self._handshake_headers())
            link = await self.links.start(self._hold_link, options)
            self._early_frames = await self.adapter.register(link, self.credentials)
        except TransportError as error:
            await self._fail(generation, error)
            return
        await self.driver.post(Opened(anyio.current_time(), generation))

    async def _handshake_headers(self) -> dict[str, str]:
        """The provider's headers, refreshed first after an auth failure."""
        if self.credentials is None:
            return {}
        with provider_failures():
            if self.lifecycle.refresh_credentials_first:
                await self.credentials.refresh()
            secrets: Mapping[str, object] = await self.credentials.handshake_headers()
        return {name: _reveal(value) for name, value in secrets.items()}

    def _connect_options(self, headers: dict[str, str]) -> ConnectOptions:
        config = self.config
        return ConnectOptions(
            open_timeout=config.open_timeout,
            close_timeout=config.close_timeout,
            headers=headers,
            max_size=config.max_size,
            max_queue=config.max_queue,
            compression=config.compression,
            ssl=self.ssl,
        )

    async def reader(self, generation: int) -> None:
        """Receive frames: note liveness, match heartbeat acks, ack, de-duplicate, deliver.

        This is the inbound hot path.  The time is read once per frame, through
        the driver's cheap clock.  A frame that the adapter's ``decode_simple``
        (:class:`~fsm_live.protocols.base.SimpleDecoder`) maps to one message, and
        that the inbox takes at once, costs no await besides ``link.receive()``;
        every other frame goes through :meth:`_process`.  The first message of a
        session proves it (:class:`~fsm_live.core.events.MessageReceived`).
        """
        try:
            link = self._link()
            clock, note_inbound = self.driver.clock, self.driver.note_inbound
            lifecycle = self.lifecycle
            if self.inbox.pending_delivery:
                await self._deliver_when_room(generation)
            early, self._early_frames = self._early_frames, []
            for frame in early:
                await self._process(generation, link, frame, clock())
            decode_simple: Callable[[Message], tuple[Any, Hashable | None] | None] | None = (
                getattr(self.adapter, "decode_simple", None))
            inbox = self.inbox
            while True:
                frame = await link.receive()
                now = clock()
                note_inbound(now)
                simple = None if decode_simple is None else decode_simple(frame)
                if simple is None:
                    await self._process(generation, link, frame, now)
                    continue
                # The end of _process, for the one message of a simple frame.
                message, message_id = simple
                if not self._is_new(message_id, now):
                    continue
                if lifecycle.awaits_proof:
                    await self.driver.post(MessageReceived(now, generation))
                if not inbox.offer(message):
                    inbox.hold(message)
                    await self._deliver_when_room(generation)
        except TransportError as error:
            await self._fail(generation, error)

    async def _process(self, generation: int, link: Link, frame: Message, now: float) -> None:
        """Everything one frame that arrived at ``now`` means, item by item, in order."""
        for item in self.adapter.decode(frame):
            if item.heartbeat_ack is not None:
                await self._heartbeat_acked(generation, item.heartbeat_ack, now)
            if item.reply is not None:
                await link.send(item.reply)
            if item.message is None or not self._is_new(item.message_id, now):
                continue
            if self.lifecycle.awaits_proof:
                await self.driver.post(MessageReceived(now, generation))
            if not self.inbox.offer(item.message):
                self.inbox.hold(item.message)
                await self._deliver_when_room(generation)

    async def _deliver_when_room(self, generation: int) -> None:
        """The application is behind: stop reading until it took the messages held.

        Our own backpressure is not the peer's silence: the core suspends the
        heartbeat timeout meanwhile (ReadingPaused / ReadingResumed).  The first
        pause of a session longer than ``heartbeat_timeout`` is logged at WARNING
        (later ones at DEBUG: an application that stays behind is told once).
        """
        clock = self.driver.clock
        paused_at = clock()
        await self.driver.post(ReadingPaused(paused_at, generation))
        with anyio.move_on_after(self.config.heartbeat_timeout):
            await self.inbox.deliver_undelivered()
        if self.inbox.pending_delivery:
            first = self._warned_generation != generation
            self._warned_generation = generation
            logger.log(logging.WARNING if first else logging.DEBUG,
                       "the application has not taken a message for %.1f s: reading is "
                       "paused, and the link is not declared lost for it", clock() - paused_at)
            await self.inbox.deliver_undelivered()
            logger.log(logging.INFO if first else logging.DEBUG,
                       "reading resumed after %.1f s", clock() - paused_at)
        await self.driver.post(ReadingResumed(clock(), generation))

    def _is_new(self, message_id: Hashable | None, now: float) -> bool:
        """Count an inbound message, or drop it as a duplicate seen before ``now``."""
        counters = self.counters
        if message_id is not None and self.dedup.seen(message_id, now):
            counters.duplicates_dropped += 1
            return False
        counters.messages_in += 1
        return True

    async def heartbeat(self, generation: int) -> None:
        """Every ``heartbeat_interval``: a ping frame, or the protocol's heartbeat frame.

        With pings, one is in flight at a time (as in websockets' keepalive): the
        task waits for its pong up to ``heartbeat_timeout``, so a pong slower than
        the interval still counts, and the next ping goes out when the interval is
        up or, if the pong came later, when it came.  A link whose pongs never come
        is found lost by the core's heartbeat deadline meanwhile.
        """
        interval = self.config.heartbeat_interval
        clock = self.driver.clock
        next_at = clock() + interval
        try:
            link = self._link()
            while True:
                await anyio.sleep_until(next_at)
                next_at += interval
                self.counters.heartbeats_sent += 1
                sent_at = clock()
                if self.adapter.uses_ping:
                    with anyio.move_on_after(self.config.heartbeat_timeout):
                        await link.ping()
                        await self._acked(generation, clock(), sent_at)
                    next_at = max(next_at, clock())
                    continue
                heartbeat_id, frame = self.adapter.heartbeat()
                self._pending_heartbeats[heartbeat_id] = sent_at
                while len(self._pending_heartbeats) > _PENDING_HEARTBEATS:
                    self._pending_heartbeats.popitem(last=False)
                await link.send(frame)
        except TransportError as error:
            await self._fail(generation, error)

    async def _heartbeat_acked(self, generation: int, heartbeat_id: str, now: float) -> None:
        sent_at = self._pending_heartbeats.pop(heartbeat_id, None)
        if sent_at is not None:  # an ack of nothing we sent is not an ack
            await self._acked(generation, now, sent_at)

    async def _acked(self, generation: int, now: float, sent_at: float) -> None:
        rtt = now - sent_at
        self.counters.heartbeats_acked += 1
        self.counters.heartbeat_rtt = rtt
        self.driver.note_inbound(now)
        if self.lifecycle.awaits_proof:  # else note_inbound said it all
            await self.driver.post(HeartbeatAcked(now, generation, rtt))

    async def refresh_token(self, generation: int) -> None:
        """One token refresh; a new token is applied by a planned ``rotate``.

        A failure is logged and counted, and the next try comes after
        ``token_retry_interval`` instead of ``token_refresh_interval``.
        """
        refresh = getattr(self.credentials, "refresh_token", None)
        assert refresh is not None, "scheduled without a token-refreshing provider"
        try:
            changed = await refresh()
        except Exception as exc:
            self.counters.token_refresh_failures += 1
            self._token_refresh_failed = True
            logger.warning("token refresh failed (%s); next try in %g s",
                           type(exc).__name__, self.config.token_retry_interval)
            return
        self.counters.token_refreshes += 1
        self._token_refresh_failed = False
        if changed:
            await self.driver.post(Rotate(anyio.current_time(), generation, "token refreshed"))

    def _token_refresh_delay(self) -> float:
        if self._token_refresh_failed:
            return self.config.token_retry_interval
        return self.config.token_refresh_interval

    async def refresh_cookies(self, generation: int) -> None:
        """One cookie refresh (used at the next dial); a failure is logged."""
        refresh = getattr(self.credentials, "refresh_cookies", None)
        assert refresh is not None, "scheduled without a cookie-refreshing provider"
        try:
            await refresh()
        except Exception as exc:
            logger.warning("cookie refresh failed (%s)", type(exc).__name__)
            return
        self.counters.cookie_refreshes += 1

    async def cleanup(self, generation: int) -> None:
        """Forget expired message ids."""
        self.dedup.sweep(anyio.current_time())

    async def flush(self, generation: int) -> None:
        """Send buffered frames in order; return once none came for a while.

        Runs on demand (an :class:`~fsm_live.runner.OnDemand` body): when
        ``send()`` buffers a frame while CONNECTED, and on entering CONNECTED with
        frames waiting.  A frame leaves the buffer once it was sent.  After the
        buffer empties the task lingers ``_FLUSH_LINGER`` seconds for more, so a
        connection that sends often (request/response) does not pay a task start
        (tens of µs with anyio) per message, and an idle one holds no flush task.
        """
        try:
            link = self._link()
            outbox = self.outbox
            while True:
                while outbox:
                    await link.send(outbox.peek())
                    outbox.pop()
                    self.counters.messages_out += 1
                with anyio.move_on_after(_FLUSH_LINGER):
                    await outbox.wait_put()
                if not outbox:
                    return  # no await since the check: no request() can be missed
        except TransportError as error:
            await self._fail(generation, error)

    async def escalation(self, generation: int) -> None:
        """In FAILED: ask the credentials provider to escalate (e.g. re-login), once.

        Always reports how it ended, at once when there is nothing to try (no
        provider, or ``max_escalations`` reached): the core waits for it before
        a failed connection retries by itself.
        """
        if self.credentials is None:
            ok, reason = False, "no escalation hook"
        elif not self.lifecycle.may_escalate:
            ok, reason = False, "max_escalations reached"
        else:
            try:
                ok = await self.credentials.escalate()
                reason = "escalation succeeded" if ok else "escalation did not recover"
            except Exception as exc:
                logger.warning("credentials escalation raised %s", type(exc).__name__)
                ok, reason = False, f"escalation raised {type(exc).__name__}"
        await self.driver.post(EscalationFinished(anyio.current_time(), generation, ok, reason))


async def _nothing_to_do(generation: int) -> None:
    """The action of a task the connection has nothing for."""


#: The body of a task the connection has nothing for: never asked for, it never
#: runs, so it costs no task at each connect.
_NOTHING_TO_DO = OnDemand(_nothing_to_do, lambda: False)


def _reveal(value: object) -> str:
    reveal = getattr(value, "reveal", None)
    return str(reveal()) if callable(reveal) else str(value)
