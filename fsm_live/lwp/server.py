"""A real local WebSocket server speaking lwp, with faults on a schedule or on demand.

:class:`LwpServer` runs websockets' asyncio server on ``host:port`` (port 0
picks a free port; see :attr:`LwpServer.port`), so it needs anyio's **asyncio**
backend.  It plays the messaging service the lwp client talks to; what it
answers (tokens, registration, heartbeats, pushes with duplicates, acks) is
:class:`~fsm_live.lwp.service.LwpService`'s, shared with the in-memory
:class:`~fsm_live.lwp.memory.MemoryLwpServer`:

* ``GET /token`` (plain HTTP on the same port, answered from websockets'
  ``process_request`` hook) issues an access token: it needs a ``Cookie`` header
  with a ``unb`` cookie and answers ``{"token": "..."}`` (401 without ``unb``,
  400 for a malformed Cookie header).  In-process code calls
  :meth:`LwpServer.issue_token` / :meth:`LwpServer.revoke_token`, or passes
  :meth:`LwpServer.token_source` to :class:`~fsm_live.lwp.credentials.CookieCredentials`.
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

Faults (:mod:`fsm_live.lwp.faults`) fire from ``schedule`` at their
offsets from the server's start, or at once through :meth:`LwpServer.inject`.
Each firing, and the end of a timed fault, is reported to the callbacks given
to :meth:`LwpServer.on_fault`.

Everything the server remembers is bounded: issued tokens, recorded acks and
received requests keep the latest entries only.  Nothing it logs contains a
token or a cookie: websockets' own DEBUG lines go through a redacting logger.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import anyio
import anyio.abc
import websockets.asyncio.server
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed as WebSocketsClosed
from websockets.http11 import Request, Response

from fsm_live.credentials import Secret
from fsm_live.errors import UsageError
from fsm_live.lwp.faults import (
    BlackHole,
    CloseConnections,
    Drop,
    Fault,
    Restart,
    ScheduledFault,
)
from fsm_live.lwp.service import (
    MAX_RECORDED,
    MAX_TOKENS,
    FaultEvent,
    LwpServerStats,
    LwpService,
)
from fsm_live.transport.redaction import redacting_logger

__all__ = ("MAX_RECORDED", "MAX_TOKENS", "FaultEvent", "LwpServer", "LwpServerStats")

_LINGER_ZERO: Final = struct.pack("ii", 1, 0)
_WEBSOCKETS_LOGGER = redacting_logger("websockets.server")


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
        self.service = LwpService(
            push_interval=push_interval,
            items_per_push=items_per_push,
            duplicate_every=duplicate_every,
        )
        self.host = host
        self._port = port
        self._schedule = tuple(schedule)
        self._close_timeout = close_timeout
        self._connections: set[ServerConnection] = set()
        self._restarts = 0  # restarts so far; the latest one listens again
        self._server: websockets.asyncio.server.Server | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise UsageError("an LwpServer can be entered only once")
        await self._listen()
        self.service.start()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        if self._schedule:
            task_group.start_soon(self._run_schedule, name="lwp_server:schedule")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task_group is not None, "__aexit__ without __aenter__"
        self._task_group.cancel_scope.cancel()
        try:
            await self._task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_listening(close_code=1001)

    async def _listen(self) -> None:
        self._server = await websockets.asyncio.server.serve(
            self._handle,
            self.host,
            self._port,
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
            for ws in list(self._connections):
                task_group.start_soon(ws.close, close_code)
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
        return self.service.started_at

    # -- tokens --------------------------------------------------------------------------

    def issue_token(self, user_id: str | Secret, *, value: Secret | None = None) -> Secret:
        """See :meth:`LwpService.issue_token`."""
        return self.service.issue_token(user_id, value=value)

    def revoke_token(self, token: str | Secret) -> bool:
        """See :meth:`LwpService.revoke_token`."""
        return self.service.revoke_token(token)

    def revoke_all_tokens(self) -> None:
        """Forget every issued token."""
        self.service.revoke_all_tokens()

    async def token_source(self, cookies: Mapping[str, Secret]) -> Secret:
        """See :meth:`LwpService.token_source`."""
        return await self.service.token_source(cookies)

    # -- faults --------------------------------------------------------------------------

    def on_fault(self, callback: Callable[[FaultEvent], None]) -> None:
        """Call ``callback(event)`` when a fault fires and when a timed fault ends."""
        self.service.on_fault(callback)

    async def inject(self, fault: Fault) -> None:
        """Fire ``fault`` now.

        Returns once it took effect: connections closed or dropped, handshake or
        registration answers armed, the listener stopped (a restart listens again
        in the background after its downtime, a black hole ends by itself).  A new
        ``reject`` or ``refuse-reg`` replaces the one still pending.
        """
        task_group = self._running()
        self.service.fire(fault)
        if isinstance(fault, Drop):
            for ws in list(self._connections):
                _abort(ws)
        elif isinstance(fault, BlackHole):
            task_group.start_soon(self._end_later, fault, fault.duration)
        elif isinstance(fault, CloseConnections):
            async with anyio.create_task_group() as closing:
                for ws in list(self._connections):
                    closing.start_soon(ws.close, fault.code)
        elif isinstance(fault, Restart):
            self._restarts += 1
            await self._stop_listening(close_code=1012)
            task_group.start_soon(self._restart_after, fault, self._restarts)
        self.service.note_change()

    def _running(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise UsageError("the LwpServer is not running (use async with)")
        return self._task_group

    async def _end_later(self, fault: Fault, delay: float) -> None:
        await anyio.sleep(delay)
        self.service.report_end(fault)

    async def _restart_after(self, fault: Restart, number: int) -> None:
        await anyio.sleep(fault.downtime)
        if number == self._restarts:  # else a later restart listens again when it is over
            await self._listen()
            self.service.report_end(fault)

    async def _run_schedule(self) -> None:
        for item in self._schedule:
            await anyio.sleep_until(self.started_at + item.at)
            await self.inject(item.fault)

    # -- observation ---------------------------------------------------------------------

    def stats(self) -> LwpServerStats:
        """A snapshot of what the server has seen."""
        return self.service.stats()

    async def wait_until(self, predicate: Callable[[LwpServerStats], bool]) -> LwpServerStats:
        """Wait until ``predicate(self.stats())`` holds; return that snapshot."""
        return await self.service.wait_until(predicate)

    # -- HTTP: tokens and handshake faults -----------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if self.service.silent():  # a black hole answers nothing, not even handshakes
            await anyio.sleep_until(self.service.silent_until)
        if urlsplit(request.path).path == "/token":
            status, body = self.service.token_answer(request.headers.get_all("Cookie"))
            return _json_response(connection, status, body)
        reject = self.service.take_reject()
        if reject is None:
            self.service.count_handshake()
            return None
        response = connection.respond(reject.status, f"rejected ({reject})\n")
        if reject.retry_after is not None:
            response.headers["Retry-After"] = f"{math.ceil(reject.retry_after):d}"
        return response

    # -- WebSocket connections -----------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self._connections.add(ws)
        try:
            await self.service.serve(ws.recv, ws.send, WebSocketsClosed)
        finally:
            self._connections.discard(ws)


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
