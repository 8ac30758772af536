"""An in-memory transport for tests: no sockets, no threads, virtual-time friendly.

A :class:`MemoryNetwork` maps URLs to what a server there does; a
:class:`MemoryTransport` dials into it.  Everything runs on the caller's anyio
backend (asyncio or trio) and all waiting goes through anyio, so timeouts follow a
mock clock such as ``trio.testing.MockClock(autojump_threshold=0)``.  Errors are
raised through :mod:`fsm_live.transport.errors`, so they carry the same facts as
the websocket transport's (both pass ``tests/transport_conformance.py``).

What a URL does, set by the test::

    network = MemoryNetwork()
    transport = MemoryTransport(network)

    async def echo(link: ServerLink) -> None:
        while True:
            await link.send(await link.receive())

    async with network.serve("ws://chat/", echo):   # runs echo per connection
        async with transport.connect("ws://chat/", ConnectOptions()) as link: ...

    network.reject("ws://busy/", 503, retry_after=7)  # HandshakeRejected, retry_after 7.0
    network.refuse("ws://down/", kind="reset")        # TransportError(kind="reset")
    network.stall("ws://slow/")                       # the handshake never completes:
                                                      # TransportError(kind="timeout")
    network.black_hole("ws://void/")                  # opens, then never answers
    network.restore("ws://busy/")                     # undo the above: back to the server
    # a URL nothing is set for refuses: TransportError(kind="refused")
    network.attempts("ws://chat/")                    # attempts so far, whatever came of them

``reject``, ``refuse``, ``stall`` and ``black_hole`` set an *override*: it takes
precedence over a server serving the URL (an outage in front of a live server)
until :meth:`MemoryNetwork.restore`; the latest override wins.  While several
``serve`` contexts for one URL are entered, the latest entered serves.

A server handler gets a :class:`ServerLink`: it can ``receive``/``send``, ``close``
with any code, ``drop()`` the connection without a close frame (the client sees
1006), or ``black_hole()`` it: from then on the server end neither reads nor
writes, answers no ping and no close (a half-open connection).  Pings are
otherwise answered at once, and close frames echoed, as websockets does in the
background whatever the handler is doing.  When a handler returns, its link is
closed with 1000; when it raises, with 1011 and the exception propagates out of
``serve`` (so a broken test server fails the test).  Leaving ``serve`` closes its
open links with 1001 (going away) and cancels its handlers.

Buffers are unbounded (there is no flow control), and messages arrive in order,
after any message sent before them; the close frame or drop comes last.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from fsm_live.errors import TransportError
from fsm_live.spec import FAILURE_KINDS
from fsm_live.transport import errors
from fsm_live.transport.base import ConnectOptions, Message

__all__ = ("MemoryLink", "MemoryNetwork", "MemoryServer", "MemoryTransport", "ServerHandler",
           "ServerLink", "echo")

ServerHandler = Callable[["ServerLink"], Awaitable[None]]

_ABNORMAL = errors.ABNORMAL_CLOSURE
_GOING_AWAY = 1001
_INTERNAL_ERROR = 1011
_MESSAGE_TOO_BIG = 1009
# How long the server end waits for a close to be answered (the client end uses the
# attempt's close_timeout); websockets' default.
_SERVER_CLOSE_TIMEOUT = 10.0


@attrs.frozen
class _CloseMark:
    """The last item of an inbox: the link closed with ``code``."""

    code: int


class _End:
    """One end of an in-memory link; the peer is the other end."""

    def __init__(self, *, max_size: int | None, close_timeout: float) -> None:
        self._inbox: collections.deque[Message | _CloseMark] = collections.deque()
        self._readable = anyio.Event()
        self._closed = anyio.Event()
        self._close_code: int | None = None
        self._closing = False
        self._black_holed = False
        self._max_size = max_size
        self._close_timeout = close_timeout
        self._peer: _End = self

    # -- what the other end (or the network) does to this end, synchronously

    def _deliver(self, item: Message | _CloseMark) -> None:
        self._inbox.append(item)
        readable, self._readable = self._readable, anyio.Event()
        readable.set()

    def _terminate(self, code: int) -> None:
        """Mark this end closed with ``code``: after what is queued, receive raises."""
        if self._close_code is None:
            self._close_code = code
            self._deliver(_CloseMark(code))
            self._closed.set()

    def _silent(self) -> bool:
        """True when frames between the two ends go nowhere (either is black-holed)."""
        return self._black_holed or self._peer._black_holed

    def _close_now(self, code: int) -> None:
        """A close answered at once: both ends closed with ``code``."""
        self._peer._terminate(code)
        self._terminate(code)

    # -- the Link methods

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006 when dropped without a close frame), else None."""
        return self._close_code

    async def _raise_closed(self) -> None:
        if self._closing:  # like websockets: wait for the close to finish, then raise
            await self._closed.wait()
        if self._close_code is not None:
            raise errors.closed(self._close_code)

    async def send(self, message: Message) -> None:
        """Send one message; raises TransportError with the close code once closed."""
        if not isinstance(message, str | bytes):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        await anyio.lowlevel.checkpoint()
        await self._raise_closed()
        if self._silent():
            return
        peer = self._peer
        size = len(message.encode()) if isinstance(message, str) else len(message)
        if peer._max_size is not None and size > peer._max_size:
            # The receiver fails the link with 1009 (and stops reading), as websockets does.
            self._close_now(_MESSAGE_TOO_BIG)
            return
        peer._deliver(message)

    async def receive(self) -> Message:
        """The next message; raises TransportError with the close code once closed."""
        await anyio.lowlevel.checkpoint()
        while not self._inbox:
            await self._readable.wait()
        item = self._inbox[0]
        if isinstance(item, _CloseMark):
            raise errors.closed(item.code)  # the mark stays: every later call raises too
        self._inbox.popleft()
        return item

    async def ping(self) -> None:
        """Return once the pong arrives: at once, unless one end is black-holed
        (then when the link closes, raising TransportError)."""
        await anyio.lowlevel.checkpoint()
        await self._raise_closed()
        if self._silent():
            await self._closed.wait()
            await self._raise_closed()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close; if the peer does not answer, wait ``close_timeout`` and abort (1006).

        Raises no TransportError; ValueError for a code or reason that cannot be sent.
        """
        errors.check_close(code, reason)
        if self._closing or self._close_code is not None:
            await self._closed.wait()
            return
        self._closing = True
        try:
            await anyio.lowlevel.checkpoint()
            if self._black_holed:
                self._terminate(_ABNORMAL)  # a dead end sends nothing at all
            elif self._peer._black_holed:
                with anyio.move_on_after(self._close_timeout):
                    await self._closed.wait()
                self._close_now(_ABNORMAL)  # no answer: abort
            else:
                self._close_now(code)
        except BaseException:
            self._close_now(_ABNORMAL)  # cancelled mid-close: abort, and re-raise
            raise
        finally:
            self._closing = False


class MemoryLink(_End):
    """The client end of an in-memory link; implements :class:`~fsm_live.transport.base.Link`."""


class ServerLink(_End):
    """The server end of an in-memory link, handed to a server handler.

    ``url`` is the URL dialled and ``request_headers`` the handshake's headers
    (``ConnectOptions.headers`` plus ``User-Agent`` when set).
    """

    def __init__(self, url: str, request_headers: Mapping[str, str]) -> None:
        super().__init__(max_size=None, close_timeout=_SERVER_CLOSE_TIMEOUT)
        self.url = url
        self.request_headers = request_headers

    def drop(self) -> None:
        """Drop the connection without a close frame: both ends closed with 1006."""
        self._close_now(_ABNORMAL)

    def black_hole(self) -> None:
        """Stop answering: from now on this end neither reads nor writes.

        The client's messages vanish, its pings and its close go unanswered (so its
        ``close()`` takes ``close_timeout`` and ends with 1006), and it receives
        nothing more: a half-open connection, found only by a heartbeat timeout.
        """
        self._black_holed = True

    @property
    def black_holed(self) -> bool:
        """True once :meth:`black_hole` was called."""
        return self._black_holed

    async def wait_closed(self) -> int:
        """Wait until the link is closed; return its close code."""
        await self._closed.wait()
        assert self._close_code is not None
        return self._close_code


class MemoryServer:
    """A server handler registered at a URL: an async context manager, from
    :meth:`MemoryNetwork.serve`.  ``links`` are the server ends accepted so far."""

    def __init__(self, network: MemoryNetwork, url: str, handler: ServerHandler) -> None:
        self._network = network
        self._url = url
        self._handler = handler
        self._task_group: anyio.abc.TaskGroup | None = None
        self.links: list[ServerLink] = []

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("a MemoryServer can be entered only once")
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._network._servers[self._url].append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._network._servers[self._url].remove(self)
        for link in self.links:
            if not link.black_holed:
                link._close_now(_GOING_AWAY)
        self._task_group.cancel_scope.cancel()
        # The body's exception propagates as it is, not wrapped in an exception group.
        await self._task_group.__aexit__(None, None, None)
        return None

    def _accept(self, link: ServerLink) -> None:
        assert self._task_group is not None
        self.links.append(link)
        # The name says "transport.memory": tests tell the server's tasks from theirs.
        self._task_group.start_soon(self._run, link, name=f"fsm_live.transport.memory {link.url}")

    async def _run(self, link: ServerLink) -> None:
        try:
            await self._handler(link)
        except Exception:
            if not link.black_holed:
                link._close_now(_INTERNAL_ERROR)
            raise
        if not link.black_holed:
            await link.close(1000)


@attrs.frozen
class _Reject:
    status: int
    retry_after: str | None


@attrs.frozen
class _Refuse:
    kind: str


@attrs.frozen
class _Stall:
    pass


@attrs.frozen
class _BlackHole:
    pass


_Override = _Reject | _Refuse | _Stall | _BlackHole


class MemoryNetwork:
    """URLs and what a server at each does; see the module docstring.

    URLs match exactly as written.  Not bound to an event loop: create it anywhere.
    """

    def __init__(self) -> None:
        self._overrides: dict[str, _Override] = {}
        self._servers: collections.defaultdict[str, list[MemoryServer]] = (
            collections.defaultdict(list)
        )
        self._attempts: collections.Counter[str] = collections.Counter()

    def serve(self, url: str, handler: ServerHandler) -> MemoryServer:
        """Run ``handler(server_link)`` for each connection to ``url`` while the
        returned :class:`MemoryServer` is entered (``async with``)."""
        return MemoryServer(self, url, handler)

    def reject(self, url: str, status: int, *, retry_after: float | str | None = None) -> None:
        """Answer handshakes at ``url`` with HTTP ``status`` (and a Retry-After header:
        a number of seconds, or the raw header value, e.g. an HTTP-date); an override."""
        if not 100 <= status <= 599 or status == 101:
            raise ValueError(f"status must be an HTTP error status, got {status!r}")
        header = None
        if retry_after is not None:
            header = retry_after if isinstance(retry_after, str) else str(round(retry_after))
        self._overrides[url] = _Reject(status, header)

    def refuse(self, url: str, *, kind: str = "refused") -> None:
        """Fail attempts at ``url`` with a network failure ``kind`` (default refused);
        an override."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAILURE_KINDS)}, got {kind!r}")
        self._overrides[url] = _Refuse(kind)

    def stall(self, url: str) -> None:
        """Never complete handshakes at ``url``: attempts end at their open_timeout;
        an override."""
        self._overrides[url] = _Stall()

    def black_hole(self, url: str) -> None:
        """Complete handshakes at ``url``, then answer nothing: no message, no pong,
        no close (a half-open connection from its first moment); an override."""
        self._overrides[url] = _BlackHole()

    def restore(self, url: str) -> None:
        """Remove the override set for ``url`` (if any): the server serving it answers
        again; with none serving, attempts are refused."""
        self._overrides.pop(url, None)

    #: Another name for :meth:`restore`, reading better when no server is serving.
    forget = restore

    def attempts(self, url: str) -> int:
        """How many attempts were made at ``url``, whatever came of them."""
        return self._attempts[url]

    async def _open(self, url: str, options: ConnectOptions) -> MemoryLink:
        self._attempts[url] += 1
        try:
            parse_uri(url)
        except InvalidURI as exc:
            raise errors.translate(exc) from exc
        try:
            with anyio.fail_after(options.open_timeout):
                await anyio.lowlevel.checkpoint()
                servers = self._servers.get(url)
                route: _Override | MemoryServer | None = self._overrides.get(url)
                if route is None and servers:
                    route = servers[-1]
                if isinstance(route, _Stall):
                    await anyio.sleep_forever()
        except TimeoutError as exc:
            raise errors.translate(exc) from exc
        if route is None:
            raise errors.failed("refused")
        if isinstance(route, _Refuse):
            raise errors.failed(route.kind)
        if isinstance(route, _Reject):
            raise errors.rejected(route.status, route.retry_after)
        headers = dict(options.headers)
        if options.user_agent is not None:
            headers.setdefault("User-Agent", options.user_agent)
        client = MemoryLink(max_size=options.max_size, close_timeout=options.close_timeout)
        server = ServerLink(url, headers)
        client._peer, server._peer = server, client
        if isinstance(route, _BlackHole):
            server.black_hole()
        else:
            assert isinstance(route, MemoryServer)
            route._accept(server)
        return client


class MemoryTransport:
    """A :class:`~fsm_live.transport.base.Transport` dialling into a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    def connect(self, url: str, options: ConnectOptions) -> _Attempt:
        """One attempt; see :meth:`fsm_live.transport.base.Transport.connect`."""
        return _Attempt(self.network, url, options)


class _Attempt:
    def __init__(self, network: MemoryNetwork, url: str, options: ConnectOptions) -> None:
        self._network = network
        self._url = url
        self._options = options
        self._link: MemoryLink | None = None

    async def __aenter__(self) -> MemoryLink:
        if self._link is not None:
            raise RuntimeError("an attempt can be entered only once")
        self._link = await self._network._open(self._url, self._options)
        return self._link

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._link is not None, "__aexit__ without __aenter__"
        with anyio.CancelScope(shield=True):  # cleanup, bounded by close_timeout
            await self._link.close()


async def echo(link: ServerLink) -> None:
    """A server handler that sends every message back until the link closes."""
    try:
        while True:
            await link.send(await link.receive())
    except TransportError:
        pass
