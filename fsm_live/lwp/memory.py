"""The lwp server on a :class:`~fsm_live.transport.memory.MemoryNetwork`: virtual-time friendly.

:class:`MemoryLwpServer` answers what :class:`~fsm_live.lwp.server.LwpServer`
answers (the same :class:`~fsm_live.lwp.service.LwpService`), on the
:class:`~fsm_live.transport.memory.ServerLink`\\ s of one URL, on any anyio
backend, so a client can be tested through hours of pushes and faults under
trio's ``MockClock`` in a moment.  It uses only the public API of
:mod:`fsm_live.transport.memory`.

Faults, as the memory network expresses them:

=================  ===================================================================
``drop``           :meth:`ServerLink.drop` on every open link (the client sees 1006)
``close CODE``     :meth:`ServerLink.close` with CODE on every open link
``restart D``      close every open link with 1012, and refuse new attempts for D
``reject S xN``    the next N handshakes that reach the server are answered HTTP S
                   (only for clients dialling through :attr:`MemoryLwpServer.transport`;
                   the answer is the URL's override during that one attempt, so an
                   attempt by another client at the very same moment meets it too)
``refuse-reg xN``  the next N registrations are answered 401
``blackhole D``    for D, frames are read and dropped and nothing is pushed (unlike the
                   socket server, a handshake is not held: the registration's answer is
                   dropped, so the client's open timeout ends the attempt)
=================  ===================================================================

The server owns a :class:`MemoryRoute` for its URL; whoever plays the network in
front of it (an outage, a black hole) sets its overrides through the same route,
so a network outage and a server restart overlapping never undo each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final, Self

import anyio
import anyio.abc

from fsm_live.credentials import Secret
from fsm_live.errors import TransportError, UsageError
from fsm_live.lwp.faults import (
    BlackHole,
    CloseConnections,
    Drop,
    Fault,
    Restart,
)
from fsm_live.lwp.service import FaultEvent, LwpServerStats, LwpService
from fsm_live.transport.base import Target
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink

__all__ = ("MemoryLwpServer", "MemoryRoute")

#: Overrides by strength: a refused attempt never gets as far as a black hole or a
#: handshake answer.
_RANKS: Final = {"refuse": 0, "black_hole": 1, "reject": 2}


class MemoryRoute:
    """The overrides of one URL of a :class:`MemoryNetwork`, from several causes at once.

    Each cause (say ``"network"`` and ``"restart"``) sets at most one override;
    the strongest in force applies (refuse, then black hole, then reject; among
    equals the latest set), and when the last cause is cleared the URL is restored
    to its server.  Only this object may set overrides for its URL.
    """

    def __init__(self, network: MemoryNetwork, url: str) -> None:
        self.network = network
        self.url = url
        self._causes: dict[str, tuple[str, Callable[[], None]]] = {}

    def refuse(self, cause: str, kind: str = "refused") -> None:
        """Attempts fail with the network failure ``kind`` while ``cause`` holds."""
        self._set(cause, "refuse", lambda: self.network.refuse(self.url, kind=kind))

    def black_hole(self, cause: str) -> None:
        """Attempts open, then nothing answers, while ``cause`` holds."""
        self._set(cause, "black_hole", lambda: self.network.black_hole(self.url))

    def reject(self, cause: str, status: int, retry_after: float | None = None) -> None:
        """Handshakes are answered HTTP ``status`` while ``cause`` holds."""
        self._set(
            cause, "reject", lambda: self.network.reject(self.url, status, retry_after=retry_after)
        )

    def clear(self, cause: str) -> None:
        """``cause`` no longer holds (nothing happens if it did not)."""
        if self._causes.pop(cause, None) is not None:
            self._apply()

    @property
    def blocked_by(self) -> str | None:
        """The override in force (``"refuse"``, ``"black_hole"``, ``"reject"``), or None
        when attempts reach the server."""
        strongest = self._strongest()
        return None if strongest is None else strongest[0]

    def _set(self, cause: str, override: str, apply: Callable[[], None]) -> None:
        self._causes.pop(cause, None)  # re-inserted last: the latest of equals wins
        self._causes[cause] = (override, apply)
        self._apply()

    def _strongest(self) -> tuple[str, Callable[[], None]] | None:
        ranked = sorted(
            enumerate(self._causes.values()), key=lambda item: (_RANKS[item[1][0]], -item[0])
        )
        return ranked[0][1] if ranked else None

    def _apply(self) -> None:
        strongest = self._strongest()
        if strongest is None:
            self.network.restore(self.url)
        else:
            strongest[1]()


class _Transport:
    """Dials the network; a handshake that reaches the server gets the server's answer
    (a pending ``reject``)."""

    def __init__(self, server: MemoryLwpServer) -> None:
        self._server = server
        self._inner = MemoryTransport(server.route.network)

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        """One attempt (see :class:`~fsm_live.transport.base.Transport`)."""
        route = self._server.route
        reject = None
        if target.url == route.url and route.blocked_by is None:
            reject = self._server.service.take_reject()
        if reject is None:
            return await self._inner.open_stream(target)
        # The server's answer for this one attempt: the network gives it.
        route.reject("handshake", reject.status, reject.retry_after)
        try:
            return await self._inner.open_stream(target)
        finally:
            route.clear("handshake")


class MemoryLwpServer:
    """The lwp server at ``url`` of ``network``; use it with ``async with``, on any
    anyio backend.

    Clients dial through :attr:`transport` (a plain
    :class:`~fsm_live.transport.memory.MemoryTransport` works too, but its
    handshakes never meet a ``reject`` fault).  The other arguments are
    :class:`~fsm_live.lwp.service.LwpService`'s.
    """

    def __init__(
        self,
        network: MemoryNetwork,
        url: str,
        *,
        push_interval: float | None = 1.0,
        items_per_push: int = 3,
        duplicate_every: int = 2,
    ) -> None:
        self.service = LwpService(
            push_interval=push_interval,
            items_per_push=items_per_push,
            duplicate_every=duplicate_every,
        )
        self.route = MemoryRoute(network, url)
        self.transport = _Transport(self)
        self._links: set[ServerLink] = set()
        self._restarts = 0  # restarts so far; the latest one ends the refusal
        self._stack: contextlib.AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def url(self) -> str:
        """The URL served."""
        return self.route.url

    @property
    def links(self) -> tuple[ServerLink, ...]:
        """The server ends of the connections open now."""
        return tuple(self._links)

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise UsageError("a MemoryLwpServer can be entered only once")
        self.service.start()
        async with contextlib.AsyncExitStack() as stack:
            # Left in reverse: first the links close (1001) and their handlers are
            # cancelled (one that raised propagates: a broken test server fails its
            # test), then the fault timers are cancelled.
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._task_group.cancel_scope.cancel)
            await stack.enter_async_context(self.route.network.serve(self.url, self._handle))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stack is not None, "__aexit__ without __aenter__"
        await self._stack.__aexit__(None, None, None)

    async def _handle(self, link: ServerLink) -> None:
        self._links.add(link)
        self.service.count_handshake()
        try:
            await self.service.serve(link.receive, link.send, TransportError)
        finally:
            self._links.discard(link)

    # -- tokens --------------------------------------------------------------------------

    def issue_token(self, user_id: str | Secret, *, value: Secret | None = None) -> Secret:
        """See :meth:`LwpService.issue_token`."""
        return self.service.issue_token(user_id, value=value)

    async def token_source(self, cookies: Mapping[str, Secret]) -> Secret:
        """See :meth:`LwpService.token_source` (the token endpoint, in-process)."""
        return await self.service.token_source(cookies)

    # -- faults --------------------------------------------------------------------------

    def on_fault(self, callback: Callable[[FaultEvent], None]) -> None:
        """Call ``callback(event)`` when a fault fires and when a timed fault ends."""
        self.service.on_fault(callback)

    async def inject(self, fault: Fault) -> None:
        """Fire ``fault`` now (see the module docstring for what each one does).

        Returns once it took effect: links closed or dropped, answers armed,
        attempts refused (a restart ends its refusal in the background after its
        downtime; a blackhole ends by itself).
        """
        task_group = self._running()
        self.service.fire(fault)
        if isinstance(fault, Drop):
            for link in self.links:
                link.drop()
        elif isinstance(fault, CloseConnections):
            await self._close_links(fault.code)
        elif isinstance(fault, BlackHole):
            task_group.start_soon(self._end_later, fault)
        elif isinstance(fault, Restart):
            self._restarts += 1
            self.route.refuse("restart")
            await self._close_links(1012)
            task_group.start_soon(self._restart_after, fault, self._restarts)
        self.service.note_change()

    async def _close_links(self, code: int) -> None:
        async with anyio.create_task_group() as closing:
            for link in self.links:
                closing.start_soon(link.close, code)

    def _running(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise UsageError("the MemoryLwpServer is not running (use async with)")
        return self._task_group

    async def _end_later(self, fault: BlackHole) -> None:
        await anyio.sleep(fault.duration)
        self.service.report_end(fault)

    async def _restart_after(self, fault: Restart, number: int) -> None:
        await anyio.sleep(fault.downtime)
        if number == self._restarts:  # else a later restart ends the refusal
            self.route.clear("restart")
            self.service.report_end(fault)

    # -- observation ---------------------------------------------------------------------

    def stats(self) -> LwpServerStats:
        """A snapshot of what the server has seen."""
        return self.service.stats()

    async def wait_until(self, predicate: Callable[[LwpServerStats], bool]) -> LwpServerStats:
        """Wait until ``predicate(self.stats())`` holds; return that snapshot."""
        return await self.service.wait_until(predicate)
