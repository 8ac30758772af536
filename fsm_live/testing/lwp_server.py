"""A real local WebSocket server speaking lwp, with faults on a schedule or on demand.

:class:`LwpServer` runs websockets' asyncio server on ``host:port`` (port 0
picks a free port; see :attr:`LwpServer.port`), so it needs anyio's **asyncio**
backend.  It plays the messaging service the lwp client talks to:

* ``GET /token`` (plain HTTP on the same port, answered from websockets'
  ``process_request`` hook) issues an access token: it needs a ``Cookie`` header
  with a ``unb`` cookie and answers ``{"token": "..."}`` (401 without ``unb``,
  400 for a malformed Cookie header).  In-process code calls
  :meth:`LwpServer.issue_token` / :meth:`LwpServer.revoke_token`, or passes
  :meth:`LwpServer.token_source` to :class:`~fsm_live.credentials.CookieCredentials`.
* ``/reg`` is answered with code 200 and the request's mid when its ``token`` was
  issued and not revoked and its ``did`` ends with ``-<unb>`` of that token's
  user; otherwise with code 401.
* ``/!`` (heartbeat) and every other request are answered with code 200 echoing
  the mid.
* Once registered, a connection gets a ``/s/sync`` push every ``push_interval``
  seconds carrying ``items_per_push`` base64 JSON items
  ``{"messageId": ..., "text": ...}``; every ``duplicate_every``-th push also
  re-sends an item of the previous push (same messageId), so clients can show
  de-duplication.  The client's acks (code-200 replies echoing a push's mid) are
  recorded.

Faults (:mod:`fsm_live.testing.fault_schedule`) fire from ``schedule`` at their
offsets from the server's start, or at once through :meth:`LwpServer.inject`.
Each firing, and the end of a timed fault, is reported to the callbacks given
to :meth:`LwpServer.on_fault`.

Everything the server remembers is bounded: issued tokens, recorded acks and
received requests keep the latest entries only.  Nothing it logs contains a
token or a cookie: websockets' own DEBUG lines go through a redacting logger.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import math
import secrets
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import anyio
import anyio.abc
import attrs
import websockets.asyncio.server
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fsm_live.credentials import Secret, parse_cookies
from fsm_live.errors import ConfigError
from fsm_live.protocols.lwp import new_mid
from fsm_live.redaction import redacting_logger
from fsm_live.testing.fault_schedule import (
    BlackHole,
    CloseConnections,
    Drop,
    Fault,
    RefuseRegistration,
    Reject,
    Restart,
    ScheduledFault,
)

__all__ = ("FaultEvent", "LwpServer", "LwpServerStats")

logger = logging.getLogger("fsm_live.testing.lwp_server")

#: Tokens remembered (oldest forgotten first); acks and requests recorded.
MAX_TOKENS: Final = 1024
MAX_RECORDED: Final = 256
#: Pushes per connection whose ack is still expected.
_MAX_PENDING_PUSHES: Final = 64
_LINGER_ZERO: Final = struct.pack("ii", 1, 0)
_SAMPLE_TEXTS: Final = (
    "hello from the lwp server",
    "is the item still available?",
    "yes, it is",
    "can you ship it tomorrow?",
    "sure, tracking number follows",
    "thanks!",
)


_WEBSOCKETS_LOGGER = redacting_logger("websockets.server")


@attrs.frozen
class FaultEvent:
    """A fault fired (``ended`` False) or a timed fault ended (``ended`` True).

    ``at`` is seconds since the server started.
    """

    at: float
    fault: Fault
    ended: bool = False

    def __str__(self) -> str:
        return f"{self.fault} over" if self.ended else str(self.fault)


@attrs.frozen(kw_only=True)
class LwpServerStats:
    """What the server has seen so far (a snapshot)."""

    handshakes: int
    handshakes_rejected: int
    tokens_issued: int
    registrations: int
    registrations_rejected: int
    heartbeats_acked: int
    requests: int
    pushes_sent: int
    items_sent: int
    duplicates_sent: int
    acks_received: int
    faults_fired: int
    connections_open: int
    #: The mids of the latest acknowledged pushes (at most MAX_RECORDED), oldest first.
    acked_mids: tuple[str, ...]
    #: The paths of the latest other requests (at most MAX_RECORDED), oldest first.
    request_paths: tuple[str, ...]


@attrs.define(eq=False)  # hashed by identity: sessions live in a set
class _Session:
    """One accepted WebSocket connection."""

    ws: ServerConnection
    registered: bool = False
    pushes: int = 0
    previous_item: dict[str, str] | None = None
    pending: OrderedDict[str, None] = attrs.Factory(OrderedDict)


@attrs.define
class _Counts:
    handshakes: int = 0
    handshakes_rejected: int = 0
    tokens_issued: int = 0
    registrations: int = 0
    registrations_rejected: int = 0
    heartbeats_acked: int = 0
    requests: int = 0
    pushes_sent: int = 0
    items_sent: int = 0
    duplicates_sent: int = 0
    acks_received: int = 0
    faults_fired: int = 0


class LwpServer:
    """The lwp server; use it with ``async with`` on anyio's asyncio backend.

    Args:
        host: The address to listen on (keep it 127.0.0.1 in tests).
        port: The port; 0 picks a free one (the same one is kept across restarts).
        schedule: Faults to fire at their offsets from the start.
        push_interval: Seconds between sync pushes to each registered
            connection; None sends none.
        items_per_push: New items in every push (>= 1).
        duplicate_every: Every n-th push also re-sends an item of the previous
            one; 0 never.
        close_timeout: How long a close waits for the client's close frame.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        schedule: Iterable[ScheduledFault] = (),
        push_interval: float | None = 1.0,
        items_per_push: int = 3,
        duplicate_every: int = 2,
        close_timeout: float = 1.0,
    ) -> None:
        if push_interval is not None and not 0 < push_interval < math.inf:
            raise ConfigError("push_interval", f"must be a positive number, got {push_interval!r}")
        if items_per_push < 1 or duplicate_every < 0:
            raise ConfigError("items_per_push", "items_per_push must be >= 1 and "
                                                "duplicate_every >= 0")
        self.host = host
        self._port = port
        self._schedule = tuple(schedule)
        self._push_interval = push_interval
        self._items_per_push = items_per_push
        self._duplicate_every = duplicate_every
        self._close_timeout = close_timeout
        self._tokens: OrderedDict[str, str] = OrderedDict()  # token -> user id (unb)
        self._sessions: set[_Session] = set()
        self._counts = _Counts()
        self._acked: deque[str] = deque(maxlen=MAX_RECORDED)
        self._request_paths: deque[str] = deque(maxlen=MAX_RECORDED)
        self._message_ids = itertools.count(1)
        self._silent_until = -math.inf
        self._restarts = 0  # restarts so far; the latest one listens again
        self._reject: Reject | None = None
        self._rejects_left = 0
        self._refusals_left = 0
        self._observers: list[Callable[[FaultEvent], None]] = []
        self._server: websockets.asyncio.server.Server | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._started_at = 0.0
        self._changed = anyio.Event()

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("an LwpServer can be entered only once")
        await self._listen()
        self._started_at = anyio.current_time()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        if self._schedule:
            task_group.start_soon(self._run_schedule, name="lwp_server:schedule")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._task_group is not None, "__aexit__ without __aenter__"
        self._task_group.cancel_scope.cancel()
        try:
            await self._task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_listening(close_code=1001)

    async def _listen(self) -> None:
        self._server = await websockets.asyncio.server.serve(
            self._handle, self.host, self._port,
            process_request=self._process_request,
            ping_interval=None,
            close_timeout=self._close_timeout,
            logger=_WEBSOCKETS_LOGGER,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _stop_listening(self, close_code: int) -> None:
        """Stop accepting, close every connection with ``close_code``, wait for handlers."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)
        async with anyio.create_task_group() as task_group:
            for session in list(self._sessions):
                task_group.start_soon(session.ws.close, close_code)
        await server.wait_closed()

    # -- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (known once entered)."""
        return self._port

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"ws://{self.host}:{self._port}/"

    @property
    def token_url(self) -> str:
        """Where ``GET /token`` is answered."""
        return f"http://{self.host}:{self._port}/token"

    @property
    def started_at(self) -> float:
        """``anyio.current_time()`` when the server started; schedule offsets count from it."""
        return self._started_at

    # -- tokens --------------------------------------------------------------------------

    def issue_token(self, user_id: str | Secret, *, value: Secret | None = None) -> Secret:
        """A new access token for ``user_id`` (the ``unb`` cookie), valid until revoked
        or until MAX_TOKENS newer ones were issued.  ``value`` is the token to accept
        (default: a random one); tests give canary values."""
        user = user_id.reveal() if isinstance(user_id, Secret) else user_id
        token = secrets.token_urlsafe(18) if value is None else value.reveal()
        self._tokens[token] = user
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        self._counts.tokens_issued += 1
        self._note_change()
        return Secret(token)

    def revoke_token(self, token: str | Secret) -> bool:
        """Forget ``token``: registrations with it get 401.  True if it was valid."""
        value = token.reveal() if isinstance(token, Secret) else token
        return self._tokens.pop(value, None) is not None

    def revoke_all_tokens(self) -> None:
        """Forget every issued token."""
        self._tokens.clear()

    async def token_source(self, cookies: Mapping[str, Secret]) -> Secret:
        """A :data:`~fsm_live.credentials.TokenSource` that issues tokens in-process.

        Raises :class:`ConfigError` when ``cookies`` lack ``unb`` (naming the cookies
        found, never their values).
        """
        if "unb" not in cookies:
            raise ConfigError("cookies", "the 'unb' cookie is required (found: "
                                         f"{', '.join(sorted(cookies)) or 'none'})")
        return self.issue_token(cookies["unb"])

    # -- faults --------------------------------------------------------------------------

    def on_fault(self, callback: Callable[[FaultEvent], None]) -> None:
        """Call ``callback(event)`` when a fault fires and when a timed fault ends."""
        self._observers.append(callback)

    async def inject(self, fault: Fault) -> None:
        """Fire ``fault`` now.

        Returns once it took effect: connections closed or dropped, handshake or
        registration answers armed, the listener stopped (a restart listens again
        in the background after its downtime, a black hole ends by itself).  A new
        ``reject`` or ``refuse-reg`` replaces the one still pending.
        """
        task_group = self._running()
        self._counts.faults_fired += 1
        self._report(FaultEvent(self._now(), fault))
        if isinstance(fault, Drop):
            for session in list(self._sessions):
                _abort(session.ws)
        elif isinstance(fault, BlackHole):
            self._silent_until = max(self._silent_until, anyio.current_time() + fault.duration)
            task_group.start_soon(self._end_later, fault, fault.duration)
        elif isinstance(fault, CloseConnections):
            async with anyio.create_task_group() as closing:
                for session in list(self._sessions):
                    closing.start_soon(session.ws.close, fault.code)
        elif isinstance(fault, Reject):
            self._reject, self._rejects_left = fault, fault.count
        elif isinstance(fault, RefuseRegistration):
            self._refusals_left = fault.count
        else:
            self._restarts += 1
            await self._stop_listening(close_code=1012)
            task_group.start_soon(self._restart_after, fault, self._restarts)
        self._note_change()

    def _running(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise RuntimeError("the LwpServer is not running (use async with)")
        return self._task_group

    async def _end_later(self, fault: Fault, delay: float) -> None:
        await anyio.sleep(delay)
        self._report(FaultEvent(self._now(), fault, ended=True))

    async def _restart_after(self, fault: Restart, number: int) -> None:
        await anyio.sleep(fault.downtime)
        if number == self._restarts:  # else a later restart listens again when it is over
            await self._listen()
            self._report(FaultEvent(self._now(), fault, ended=True))

    async def _run_schedule(self) -> None:
        for item in self._schedule:
            await anyio.sleep_until(self._started_at + item.at)
            await self.inject(item.fault)

    def _report(self, event: FaultEvent) -> None:
        logger.info("fault %s at %.3f s", event, event.at)
        for callback in self._observers:
            callback(event)

    def _now(self) -> float:
        return anyio.current_time() - self._started_at

    def _silent(self) -> bool:
        return anyio.current_time() < self._silent_until

    # -- observation ---------------------------------------------------------------------

    def stats(self) -> LwpServerStats:
        """A snapshot of what the server has seen."""
        counts = self._counts
        return LwpServerStats(
            **attrs.asdict(counts),
            connections_open=len(self._sessions),
            acked_mids=tuple(self._acked),
            request_paths=tuple(self._request_paths),
        )

    async def wait_until(self, predicate: Callable[[LwpServerStats], bool]) -> LwpServerStats:
        """Wait until ``predicate(self.stats())`` holds; return that snapshot."""
        while not predicate(stats := self.stats()):
            await self._changed.wait()
        return stats

    def _note_change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- HTTP: tokens and handshake faults -----------------------------------------------

    async def _process_request(self, connection: ServerConnection,
                               request: Request) -> Response | None:
        if self._silent():  # a black hole answers nothing, not even handshakes
            await anyio.sleep_until(self._silent_until)
        if urlsplit(request.path).path == "/token":
            return self._token_response(connection, request.headers)
        self._counts.handshakes += 1
        self._note_change()
        reject = self._reject
        if reject is None or self._rejects_left <= 0:
            return None
        self._rejects_left -= 1
        self._counts.handshakes_rejected += 1
        response = connection.respond(reject.status, f"rejected ({reject})\n")
        if reject.retry_after is not None:
            response.headers["Retry-After"] = f"{math.ceil(reject.retry_after):d}"
        return response

    def _token_response(self, connection: ServerConnection, headers: Headers) -> Response:
        try:
            cookies = parse_cookies("; ".join(headers.get_all("Cookie")))
        except ConfigError as error:
            return _json_response(connection, 400, {"error": str(error)})
        if "unb" not in cookies:
            return _json_response(connection, 401, {"error": "the 'unb' cookie is required"})
        token = self.issue_token(cookies["unb"])
        return _json_response(connection, 200, {"token": token.reveal()})

    # -- WebSocket connections -----------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        session = _Session(ws)
        self._sessions.add(session)
        self._note_change()
        try:
            async with anyio.create_task_group() as task_group:
                if self._push_interval is not None:
                    task_group.start_soon(self._push_loop, session, self._push_interval)
                with contextlib.suppress(ConnectionClosed):
                    async for frame in ws:
                        await self._on_frame(session, frame)
                task_group.cancel_scope.cancel()
        finally:
            self._sessions.discard(session)
            self._note_change()

    async def _on_frame(self, session: _Session, frame: str | bytes) -> None:
        if self._silent():
            return  # half-open: read and drop everything
        try:
            value = json.loads(frame)
        except ValueError:
            return
        if not isinstance(value, dict):
            return
        headers = value.get("headers")
        mid = headers.get("mid") if isinstance(headers, dict) else None
        if "code" in value:  # the client's reply: an ack of one of our pushes
            if isinstance(mid, str) and mid in session.pending:
                del session.pending[mid]
                self._acked.append(mid)
                self._counts.acks_received += 1
                self._note_change()
            return
        path = value.get("lwp")
        if not isinstance(mid, str) or not isinstance(path, str):
            return
        if path == "/reg":
            code = self._register(session, value["headers"])
        elif path == "/!":
            self._counts.heartbeats_acked += 1
            code = 200
        else:
            self._counts.requests += 1
            self._request_paths.append(path)
            code = 200 if session.registered else 401
        self._note_change()
        await session.ws.send(json.dumps({"code": code, "headers": {"mid": mid}},
                                         separators=(",", ":")))

    def _register(self, session: _Session, headers: dict[str, Any]) -> int:
        user = self._tokens.get(str(headers.get("token")))
        did = headers.get("did")
        valid = user is not None and isinstance(did, str) and did.endswith(f"-{user}")
        if self._refusals_left > 0:
            self._refusals_left -= 1
            valid = False
        if not valid:
            self._counts.registrations_rejected += 1
            return 401
        session.registered = True
        self._counts.registrations += 1
        return 200

    async def _push_loop(self, session: _Session, interval: float) -> None:
        next_at = anyio.current_time() + interval
        with contextlib.suppress(ConnectionClosed):
            while True:
                await anyio.sleep_until(next_at)
                next_at += interval
                if session.registered and not self._silent():
                    await session.ws.send(self._next_push(session))

    def _next_push(self, session: _Session) -> str:
        session.pushes += 1
        items = []
        for _ in range(self._items_per_push):
            number = next(self._message_ids)
            items.append({"messageId": f"msg-{number}",
                          "text": _SAMPLE_TEXTS[number % len(_SAMPLE_TEXTS)]})
        duplicate = (self._duplicate_every and session.previous_item is not None
                     and session.pushes % self._duplicate_every == 0)
        if duplicate and session.previous_item is not None:
            items.insert(0, session.previous_item)
            self._counts.duplicates_sent += 1
        session.previous_item = items[-1]
        mid = new_mid()
        session.pending[mid] = None
        while len(session.pending) > _MAX_PENDING_PUSHES:
            session.pending.popitem(last=False)
        self._counts.pushes_sent += 1
        self._counts.items_sent += len(items)
        self._note_change()
        return json.dumps({"lwp": "/s/sync", "headers": {"mid": mid, "sid": secrets.token_hex(4)},
                           "body": {"syncPushPackage": {"data": [
                               {"data": _b64_json(item), "objectType": 40000} for item in items
                           ]}}}, separators=(",", ":"))


def _b64_json(value: object) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def _json_response(connection: ServerConnection, status: int, body: object) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def _abort(ws: ServerConnection) -> None:
    """Abort the TCP stream with a RST: no close frame, no FIN."""
    sock: Any = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    ws.transport.abort()
