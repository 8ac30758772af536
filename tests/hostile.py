"""A hostile WebSocket peer: a raw TCP server whose every byte the test chooses.

The websockets servers of :mod:`servers` only send what RFC 6455 allows and answer
what they must (a pong for every ping, a close frame for a close frame).  An
attacker does neither.  Here the test writes the server's side byte by byte: the
HTTP answer to the handshake (any status line, any reason phrase, any header), the
frames (any opcode, any fragmentation, unmasked or not, control frames the RFC
forbids), their timing (:meth:`Peer.trickle`: one byte at a time), and whether it
reads at all.  What the client sends is parsed with
websockets' own Sans-I/O parsers (``Request.parse``, ``Frame.parse``), so a test
can wait for the client's close frame and read its code.

Everything runs on the test's anyio backend (asyncio or trio) over a real
loopback socket; nothing here waits on a timer except :meth:`Peer.trickle`, whose
pace the test chooses.  Each test bounds its own real time with
``anyio.fail_after``.

::

    async def script(peer: Peer) -> None:
        await peer.accept()                                   # a correct 101
        await peer.send(frame(Opcode.TEXT, b"", fin=False))   # a message that never ends
        for _ in range(5_000):
            await peer.send(frame(Opcode.CONT, b"", fin=False))
        peer.outcome["close"] = await peer.wait_close()       # the client's close code

    async with hostile_server(script) as server:
        async with fsm_live.connect(server.url) as conn: ...
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import attrs
from anyio.abc import SocketAttribute
from servers import Attempts
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.streams import StreamReader
from websockets.utils import accept_key

__all__ = (
    "HostileServer",
    "Peer",
    "frame",
    "frame_head",
    "hostile_server",
    "lwp_reply",
    "switching_protocols",
)

T = TypeVar("T")

#: What a broken or closed client connection raises in the peer's script: the script
#: ends quietly (the client hung up, which is what many attacks are waiting for).
_GONE: Final = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    EOFError,
    OSError,
)


def frame_head(opcode: int, length: int, *, fin: bool = True, rsv: int = 0) -> bytes:
    """The header of a server-to-client frame (unmasked) announcing ``length`` payload
    bytes; nothing is checked (a control frame may be fragmented or too long, ``rsv``
    bits may be set, the opcode may be reserved)."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0x0F)
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A whole server-to-client frame, serialised as given (see :func:`frame_head`)."""
    return frame_head(opcode, len(payload), fin=fin, rsv=rsv) + payload


def switching_protocols(
    request: Request,
    *,
    reason: str = "Switching Protocols",
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A correct ``101`` answer to ``request`` (the right ``Sec-WebSocket-Accept``),
    with the reason phrase and extra headers the test chooses (latin-1)."""
    lines = [
        f"HTTP/1.1 101 {reason}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(request.headers['Sec-WebSocket-Key'])}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Peer:
    """One accepted TCP connection, driven by the test's script.

    ``request`` is the client's handshake request once read; ``outcome`` is a dict
    the script fills for the test to read (a close code, a count, a figure).
    """

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.request: Request | None = None
        self.outcome: dict[str, Any] = {}
        self._reader = StreamReader()

    # -- reading what the client sends -------------------------------------------------

    async def _parse(self, parser: Generator[None, None, T]) -> T:
        """Run one of websockets' generator parsers over the bytes the client sends."""
        while True:
            try:
                parser.send(None)
            except StopIteration as done:
                return done.value
            try:
                data = await self.stream.receive()
            except anyio.EndOfStream:
                self._reader.feed_eof()
            else:
                self._reader.feed_data(data)

    async def read_request(self) -> Request:
        """The client's handshake request (websockets' ``Request.parse``)."""
        self.request = await self._parse(Request.parse(self._reader.read_line))
        return self.request

    async def receive_frame(self) -> Frame:
        """The client's next frame, unmasked (raises EOFError at the end of its stream)."""
        return await self._parse(
            Frame.parse(self._reader.read_exact, mask=True, max_size=None, extensions=None)
        )

    async def receive_text(self) -> str:
        """The client's next text message (unfragmented: fsm_live never fragments);
        control frames before it are skipped."""
        while True:
            received = await self.receive_frame()
            if received.opcode is Opcode.TEXT:
                return bytes(received.data).decode()

    async def receive_json(self) -> Any:
        """The client's next text message, parsed as JSON."""
        return json.loads(await self.receive_text())

    async def wait_close(self) -> int | None:
        """Read until the client's close frame and return its code (1005 when it has
        none); None if its stream ends first (it aborted the TCP connection)."""
        while True:
            try:
                received = await self.receive_frame()
            except _GONE:
                return None
            if received.opcode is Opcode.CLOSE:
                return Close.parse(bytes(received.data)).code if received.data else 1005

    # -- writing -----------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Send ``data`` as it is (frames, or anything else)."""
        await self.stream.send(data)

    async def accept(
        self, *, reason: str = "Switching Protocols", headers: Iterable[tuple[str, str]] = ()
    ) -> Request:
        """Read the handshake request and answer a correct 101 (see
        :func:`switching_protocols`); return the request."""
        request = await self.read_request()
        await self.send(switching_protocols(request, reason=reason, headers=headers))
        return request

    async def trickle(self, data: bytes, *, every: float) -> None:
        """Send ``data`` one byte at a time, ``every`` seconds apart."""
        for index in range(len(data)):
            await self.send(data[index : index + 1])
            await anyio.sleep(every)

    # -- the lwp protocol's registration -------------------------------------------------

    async def register_lwp(self, code: object = 200) -> str:
        """Accept the handshake, read lwp's ``/reg`` request and answer it with
        ``code`` (echoing its mid, as a server does); return that mid."""
        await self.accept()
        while True:
            request = await self.receive_json()
            if request.get("lwp") == "/reg":
                break
        mid: str = request["headers"]["mid"]
        await self.send(frame(Opcode.TEXT, lwp_reply(mid, code)))
        return mid


def lwp_reply(mid: str, code: object = 200) -> bytes:
    """An lwp reply frame's payload: ``code`` (any JSON value) for request ``mid``."""
    return json.dumps({"code": code, "headers": {"mid": mid}}).encode()


@attrs.define
class HostileServer:
    """A running hostile server: its port, the attempts it saw, every peer it ran."""

    port: int
    attempts: Attempts
    peers: list[Peer]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


@contextlib.asynccontextmanager
async def hostile_server(script: Callable[[Peer], Awaitable[None]]) -> AsyncIterator[HostileServer]:
    """A TCP server on 127.0.0.1 (port 0) running ``script(peer)`` for every connection.

    When the script returns, the connection is closed (a FIN).  The client going
    away ends a script quietly (its read or write raises, which is not a failure
    of the test); any other exception in a script fails the test when the block
    is left.  Leaving cancels the scripts still running.
    """
    attempts = Attempts()
    peers: list[Peer] = []

    async def run(stream: anyio.abc.SocketStream) -> None:
        attempts.note()
        peer = Peer(stream)
        peers.append(peer)
        async with stream:
            with contextlib.suppress(*_GONE):
                await script(peer)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, run)
        yield HostileServer(listener.extra(SocketAttribute.local_port), attempts, peers)
        task_group.cancel_scope.cancel()
