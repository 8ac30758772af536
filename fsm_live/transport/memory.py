"""An in-memory network for tests: real WebSocket bytes, no sockets, virtual-time friendly.

A :class:`MemoryNetwork` maps URLs to what a server there does; a
:class:`MemoryTransport` opens byte streams into it.  The bytes are real
WebSocket traffic: the client end is driven by fsm_live's engine, the server end
by websockets' Sans-I/O ``ServerProtocol`` (the handshake, framing, pings
answered, the closing handshake), fed synchronously as the client writes, so a
server costs no task of its own beyond its handler.  Everything runs on the
caller's anyio backend and all waiting goes through anyio, so timeouts follow a
mock clock such as ``trio.testing.MockClock(autojump_threshold=0)``.

What a URL does, set by the test::

    network = MemoryNetwork()
    transport = MemoryTransport(network)

    async def echo(link: ServerLink) -> None:
        while True:
            await link.send(await link.receive())

    async with network.serve("ws://chat/", echo):   # runs echo per connection
        async with fsm_live.connect("ws://chat/", transport=transport) as conn: ...

    network.reject("ws://busy/", 503, retry_after=7)  # HTTP 503 with Retry-After: 7
    network.refuse("ws://down/", kind="reset")        # the attempt fails: kind reset
    network.stall("ws://slow/")                       # the connect never completes
    network.black_hole("ws://void/")                  # the handshake completes, then
                                                      # nothing answers
    network.hang_up("ws://gone/")                     # the connection is accepted, then
                                                      # closed before any answer (EOF
                                                      # during the handshake)
    network.restore("ws://busy/")                     # undo the above: back to the server
    # a URL nothing is set for refuses: kind refused
    network.attempts("ws://chat/")                    # attempts so far, whatever came of them

``reject``, ``refuse``, ``stall``, ``black_hole`` and ``hang_up`` set an *override*: it takes
precedence over a server serving the URL (an outage in front of a live server)
until :meth:`MemoryNetwork.restore`; the latest override wins.  While several
``serve`` contexts for one URL are entered, the latest entered serves.

A server handler gets a :class:`ServerLink`: it can ``receive``/``send`` (a
message, or one in fragments with ``send_fragments``), ``ping`` and wait for the
pong, ``close`` with any code, ``drop()`` the connection without a close frame (the client sees
its stream end: 1006), ``reset()`` it (the client's stream breaks), stop reading
(``pause_reading()``: the client's writes wait once :data:`PIPE_LIMIT` bytes are
pending), or ``black_hole()`` it: from then on the server end discards what it
reads and writes nothing, not even a pong (a half-open connection).  When a
handler returns, its link is closed with 1000; when it raises, with 1011 and the
exception propagates out of ``serve`` (so a broken test server fails the test).
Leaving ``serve`` closes its open links with 1001 (going away) and cancels its
handlers.

Each direction buffers at most :data:`PIPE_LIMIT` bytes before a writer waits
(control frames excepted), as on TCP, so a peer that stops reading pushes back.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Self

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from fsm_live.errors import FAILURE_KINDS, TransportError
from fsm_live.transport import errors
from fsm_live.transport.base import Message, Target

__all__ = (
    "PIPE_LIMIT",
    "MemoryNetwork",
    "MemoryServer",
    "MemoryTransport",
    "ServerHandler",
    "ServerLink",
    "echo",
)

ServerHandler = Callable[["ServerLink"], Awaitable[None]]

#: Bytes each direction of an in-memory connection buffers before a writer waits.
PIPE_LIMIT: Final = 256 * 1024
_GOING_AWAY: Final = 1001
_INTERNAL_ERROR: Final = 1011
#: How long a server end waits for the client to answer a close it started.
_SERVER_CLOSE_TIMEOUT: Final = 10.0
_LOGGER: Final = logging.getLogger("fsm_live.transport.memory")


class _ToClient:
    """Bytes from the server to the client, in order, then the end (EOF or broken)."""

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.eof = False
        self.broken = False
        self._changed = anyio.Event()

    def changed(self) -> anyio.Event:
        return self._changed

    def wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def write(self, data: bytes) -> None:
        if not (self.eof or self.broken) and data:
            self.chunks.append(data)
            self.size += len(data)
            self.wake()

    def end(self, broken: bool = False) -> None:
        self.eof = True
        self.broken = self.broken or broken
        if broken:
            self.chunks.clear()
            self.size = 0
        self.wake()


class _ClientStream(anyio.abc.ByteStream):
    """The client's end: an anyio byte stream whose writes feed the server end."""

    def __init__(self, server: ServerLink) -> None:
        self._server = server
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        # The checkpoint comes first: once chunks are seen, nothing may run before
        # one is taken (a reset clears them).
        await anyio.lowlevel.checkpoint()
        incoming = self._server._to_client
        while not incoming.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if incoming.broken:
                raise anyio.BrokenResourceError
            if incoming.eof:
                raise anyio.EndOfStream
            await incoming.changed().wait()
        if self._closed:
            raise anyio.ClosedResourceError
        chunk = incoming.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            incoming.chunks.appendleft(rest)
        incoming.size -= len(chunk)
        incoming.wake()  # room for the server's writer
        return chunk

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        server = self._server
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if server._to_client.broken or server._reset:
                raise anyio.BrokenResourceError
            if server._pending_size < PIPE_LIMIT:
                break
            await server._room.wait()
        server._receive(bytes(item))

    async def send_eof(self) -> None:
        self._server._receive_eof()

    def input_pending(self) -> bool:
        """True while bytes from the server wait to be received (see
        ``fsm_live._runtime.links.StreamLink.input_pending``)."""
        return bool(self._server._to_client.chunks) and not self._closed

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._server._receive_eof()
        await anyio.lowlevel.checkpoint()


@attrs.frozen
class _CloseMark:
    """The last item a server link receives: the connection closed with ``code``."""

    code: int


class ServerLink:
    """The server end of an in-memory WebSocket, handed to a server handler.

    ``url`` is the URL dialled and ``request_headers`` the handshake's headers.
    ``send``/``receive`` raise :class:`~fsm_live.errors.TransportError` with the
    close code once the connection is closed.
    """

    def __init__(
        self,
        url: str,
        *,
        reject: tuple[int, str | None] | None = None,
        on_open: Callable[[ServerLink], None] | None = None,
    ) -> None:
        self.url = url
        self.request_headers: Mapping[str, str] = {}
        self._reject = reject
        self._on_open = on_open
        self._protocol = ServerProtocol(max_size=None, logger=_LOGGER)
        self._to_client = _ToClient()
        self._inbox: collections.deque[Message | _CloseMark] = collections.deque()
        self._readable = anyio.Event()
        self._closed = anyio.Event()
        self._close_code: int | None = None
        self._black_holed = False
        self._reset = False
        self._reading = True
        self._pending: collections.deque[bytes] = collections.deque()  # while not reading
        self._pending_size = 0
        self._room = anyio.Event()
        self._fragments: list[bytes] = []
        self._fragments_text = False
        self._pings: dict[bytes, anyio.Event] = {}
        #: Ping frames received from the client.
        self.pings_received = 0

    # -- fed by the client's writes (synchronously) ----------------------------------------

    def _receive(self, data: bytes) -> None:
        if self._black_holed or self._closed.is_set():
            return
        if not self._reading:
            self._pending.append(data)
            self._pending_size += len(data)
            return
        protocol = self._protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Request):
                self._answer(event)
            elif isinstance(event, Frame):
                self._on_frame(event)
        self._write_out()

    def _receive_eof(self) -> None:
        if not self._black_holed:
            self._protocol.receive_eof()
            self._write_out()
        self._ended()

    def _answer(self, request: Request) -> None:
        protocol = self._protocol
        self.request_headers = dict(request.headers.raw_items())
        if self._reject is None:
            response = protocol.accept(request)
        else:
            status, retry_after = self._reject
            response = protocol.reject(status, "rejected by the memory network\n")
            if retry_after is not None:
                response.headers["Retry-After"] = retry_after
        protocol.send_response(response)
        if protocol.state is OPEN and self._on_open is not None:
            self._on_open(self)

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if opcode is not Opcode.CONT:
                self._fragments_text = opcode is Opcode.TEXT
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments.clear()
                self._deliver(data.decode() if self._fragments_text else data)
        elif opcode is Opcode.PING:
            self.pings_received += 1
        elif opcode is Opcode.PONG:
            waiter = self._pings.pop(bytes(frame.data), None)
            if waiter is not None:
                waiter.set()
        elif opcode is Opcode.CLOSE:
            close = self._protocol.close_rcvd
            self._close_code = close.code if close is not None else 1005

    def _write_out(self) -> None:
        for data in self._protocol.data_to_send():
            if data:
                self._to_client.write(data)
            else:  # the server closes the TCP connection after the closing handshake
                self._to_client.end()
                self._ended()

    def _deliver(self, item: Message | _CloseMark) -> None:
        self._inbox.append(item)
        self._readable.set()
        self._readable = anyio.Event()

    def _ended(self) -> None:
        if self._closed.is_set():
            return
        if self._close_code is None:
            close = self._protocol.close_rcvd
            self._close_code = close.code if close is not None else errors.ABNORMAL_CLOSURE
        self._deliver(_CloseMark(self._close_code))
        self._closed.set()
        self._room.set()
        for waiter in self._pings.values():  # ping() raises: no pong will come
            waiter.set()

    # -- the handler's API -----------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006 when it ended without a close frame)."""
        return self._close_code if self._closed.is_set() else None

    async def send(self, message: Message, *, text: bool | None = None) -> None:
        """Send one message (``str`` as text, ``bytes`` as binary); waits while the
        client has :data:`PIPE_LIMIT` bytes unread.

        ``text`` overrides the frame type, as websockets' ``send`` does: ``bytes`` with
        ``text=True`` go out in a text frame as they are (UTF-8 or not).
        """
        await self.send_fragments([message], text=text)

    async def send_fragments(
        self, fragments: Sequence[Message], *, text: bool | None = None
    ) -> None:
        """Send one message in ``fragments``, a frame each (all ``str`` or all
        ``bytes``; ``text`` as in :meth:`send`)."""
        kinds = {type(fragment) for fragment in fragments}
        if not fragments or not kinds <= {str, bytes} or len(kinds) > 1:
            raise TypeError("a message is one or more fragments, all str or all bytes")
        await self._wait_room()
        if self._black_holed:
            return
        as_text = (str in kinds) if text is None else text
        last = len(fragments) - 1
        for i, fragment in enumerate(fragments):
            data = fragment.encode() if isinstance(fragment, str) else fragment
            if i > 0:
                self._protocol.send_continuation(data, fin=i == last)
            elif as_text:
                self._protocol.send_text(data, fin=i == last)
            else:
                self._protocol.send_binary(data, fin=i == last)
        self._write_out()

    async def ping(self, data: bytes = b"") -> None:
        """Send a ping and wait for its pong; raises TransportError if the link closes
        first (a black-holed link never answers: bound the wait)."""
        await self._wait_room()
        waiter = self._pings.setdefault(data, anyio.Event())
        if not self._black_holed:
            self._protocol.send_ping(data)
            self._write_out()
        await waiter.wait()
        if self._closed.is_set():
            raise errors.closed(self._close_code or errors.ABNORMAL_CLOSURE)

    async def _wait_room(self) -> None:
        """Wait while the client has PIPE_LIMIT bytes unread; raise once closed."""
        await anyio.lowlevel.checkpoint()
        while not self._closed.is_set() and self._to_client.size >= PIPE_LIMIT:
            await self._to_client.changed().wait()
        if self._closed.is_set() or self._protocol.state is not OPEN:
            raise errors.closed(self._close_code or errors.ABNORMAL_CLOSURE)

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

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``; wait for the client's answer up to 10 s, then drop."""
        errors.check_close(code, reason)
        if self._protocol.state is OPEN and not self._black_holed:
            self._protocol.send_close(code, reason)
            self._write_out()
            with anyio.move_on_after(_SERVER_CLOSE_TIMEOUT):
                await self._closed.wait()
        self.drop()

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` to the client as it is: part of a frame, a frame this end's
        protocol would never send (a hostile or broken peer)."""
        self._to_client.write(data)

    def drop(self) -> None:
        """End the connection without a close frame: the client sees its stream end."""
        self._to_client.end()
        self._ended()

    def reset(self) -> None:
        """Break the connection (a TCP reset): the client's reads and writes fail."""
        self._reset = True
        self._to_client.end(broken=True)
        self._ended()

    def black_hole(self) -> None:
        """Stop answering: from now on this end discards what it reads and writes
        nothing.  The client's messages vanish, its pings and its close go unanswered
        (so its close takes ``close_timeout``): a half-open connection, found only by
        a heartbeat timeout."""
        self._black_holed = True

    @property
    def black_holed(self) -> bool:
        """True once :meth:`black_hole` was called."""
        return self._black_holed

    def pause_reading(self) -> None:
        """Stop reading: the client's bytes wait (its writes block past PIPE_LIMIT)."""
        self._reading = False

    def resume_reading(self) -> None:
        """Read again, starting with what waited."""
        self._reading = True
        pending, self._pending = self._pending, collections.deque()
        self._pending_size = 0
        for data in pending:
            self._receive(data)
        self._room.set()
        self._room = anyio.Event()

    async def wait_closed(self) -> int:
        """Wait until the connection is closed; return its close code."""
        await self._closed.wait()
        assert self._close_code is not None
        return self._close_code


class MemoryServer:
    """A server handler registered at a URL: an async context manager, from
    :meth:`MemoryNetwork.serve`.  ``links`` are the server ends opened so far."""

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
            if not link.black_holed and link.close_code is None and link._protocol.state is OPEN:
                link._protocol.send_close(_GOING_AWAY)
                link._write_out()
        self._task_group.cancel_scope.cancel()
        # The body's exception propagates as it is, not wrapped in an exception group.
        await self._task_group.__aexit__(None, None, None)
        return None

    def _opened(self, link: ServerLink) -> None:
        assert self._task_group is not None
        self.links.append(link)
        # The name says "transport.memory": tests tell the server's tasks from theirs.
        self._task_group.start_soon(self._run, link, name=f"fsm_live.transport.memory {self._url}")

    async def _run(self, link: ServerLink) -> None:
        try:
            await self._handler(link)
        except TransportError:
            return  # the connection closed under the handler
        except Exception:
            if not link.black_holed:
                with anyio.CancelScope(shield=True), anyio.move_on_after(0.1):
                    await link.close(_INTERNAL_ERROR)
            raise
        if not link.black_holed and link.close_code is None:
            await link.close(1000)


# -- the network ---------------------------------------------------------------------------


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


@attrs.frozen
class _HangUp:
    pass


_Override = _Reject | _Refuse | _Stall | _BlackHole | _HangUp


class MemoryNetwork:
    """URLs and what a server at each does; see the module docstring.

    URLs match exactly as written.  Not bound to an event loop: create it anywhere.
    """

    def __init__(self) -> None:
        self._overrides: dict[str, _Override] = {}
        self._servers: collections.defaultdict[str, list[MemoryServer]] = collections.defaultdict(
            list
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
        """Never complete connects to ``url``: attempts end at their open timeout;
        an override."""
        self._overrides[url] = _Stall()

    def black_hole(self, url: str) -> None:
        """Complete handshakes at ``url``, then answer nothing: no message, no pong,
        no close (a half-open connection from its first moment); an override."""
        self._overrides[url] = _BlackHole()

    def hang_up(self, url: str) -> None:
        """Accept connections to ``url`` and close them before answering anything: the
        client sees the end of the stream during its handshake (kind ``eof``); an
        override."""
        self._overrides[url] = _HangUp()

    def restore(self, url: str) -> None:
        """Remove the override set for ``url`` (if any): the server serving it answers
        again; with none serving, attempts are refused."""
        self._overrides.pop(url, None)

    #: Another name for :meth:`restore`, reading better when no server is serving.
    forget = restore

    def attempts(self, url: str) -> int:
        """How many attempts were made at ``url``, whatever came of them."""
        return self._attempts[url]

    async def _open(self, target: Target) -> anyio.abc.ByteStream:
        url = target.url
        self._attempts[url] += 1
        await anyio.lowlevel.checkpoint()
        route = self._overrides.get(url)
        servers = self._servers.get(url)
        if isinstance(route, _Stall):
            await anyio.sleep_forever()
        if isinstance(route, _Refuse):
            raise errors.failed(route.kind)
        if isinstance(route, _Reject):
            return _ClientStream(ServerLink(url, reject=(route.status, route.retry_after)))
        if isinstance(route, _BlackHole):
            return _ClientStream(ServerLink(url, on_open=ServerLink.black_hole))
        if isinstance(route, _HangUp):
            link = ServerLink(url)
            link.drop()
            return _ClientStream(link)
        if not servers:
            raise errors.failed("refused")
        return _ClientStream(ServerLink(url, on_open=servers[-1]._opened))


class MemoryTransport:
    """A :class:`~fsm_live.transport.base.Transport` dialling into a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        """One attempt; see :meth:`fsm_live.transport.base.Transport.open_stream`."""
        return await self.network._open(target)


async def echo(link: ServerLink) -> None:
    """A server handler that sends every message back until the link closes."""
    with contextlib.suppress(TransportError):
        while True:
            await link.send(await link.receive())
