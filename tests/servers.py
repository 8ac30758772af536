"""Local servers for tests with real sockets: websockets servers and raw TCP listeners.

Everything listens on 127.0.0.1, port 0, and runs in the test's own event loop on
the running anyio backend (websockets' asyncio server on asyncio, its trio server
on trio), so server-side facts (attempts, close codes) can be awaited with anyio
events.  Every server counts the connection *attempts* it sees, with the time
(``anyio.current_time()``) of each, which is what "no further attempts" and
"growing gaps" are measured on.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import attrs
import sniffio
from anyio.abc import SocketAttribute
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = (
    "Attempts",
    "RawServer",
    "Reject",
    "ServerSide",
    "WebSocketServer",
    "answer_http_400",
    "echo",
    "hang_up_after_request",
    "raw_server",
    "speak_something_else",
    "stalled_listener",
    "websocket_server",
)

#: websockets' server waits this long for a client's close frame / TCP close.
SERVER_CLOSE_TIMEOUT = 0.5


def _on_trio() -> bool:
    return sniffio.current_async_library() == "trio"


@attrs.define
class Attempts:
    """Connection attempts a server saw: their times, and a way to wait for the n-th."""

    times: list[float] = attrs.Factory(list)
    _changed: anyio.Event = attrs.Factory(anyio.Event)

    def note(self) -> None:
        self.times.append(anyio.current_time())
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def count(self) -> int:
        return len(self.times)

    @property
    def gaps(self) -> list[float]:
        """Seconds between consecutive attempts."""
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    async def wait_for(self, count: int) -> None:
        """Return once at least ``count`` attempts were seen."""
        while len(self.times) < count:
            await self._changed.wait()


class ServerSide:
    """One accepted WebSocket connection, the same on websockets' asyncio and trio servers."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._trio = _on_trio()

    @property
    def request_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self.ws.request.headers
        return headers

    @property
    def response_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self.ws.response.headers
        return headers

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Send a message; ``text=True`` sends bytes in a text frame as they are."""
        await self.ws.send(message, text=text)

    async def send_fragments(
        self, fragments: Sequence[str | bytes], *, text: bool | None = None
    ) -> None:
        """Send one message in fragments, a frame each."""
        await self.ws.send(list(fragments), text=text)

    async def ping(self, data: bytes = b"") -> None:
        """Send a ping and wait for its pong."""
        if self._trio:
            pong = await self.ws.ping(data)
            await pong.wait()
        else:
            await (await self.ws.ping(data))

    async def drop(self) -> None:
        """End the TCP connection now, without a close frame."""
        if self._trio:
            import trio

            await trio.aclose_forcefully(self.ws.stream)
        else:
            self.ws.transport.abort()
        await self.ws.wait_closed()

    async def recv(self) -> str | bytes:
        message: str | bytes = await self.ws.recv()
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._trio:
            await self.ws.aclose(code, reason)
        else:
            await self.ws.close(code, reason)

    async def wait_closed(self) -> int | None:
        await self.ws.wait_closed()
        code: int | None = self.ws.close_code
        return code


Handler = Callable[[ServerSide], Awaitable[None]]
#: Decides the HTTP answer to the n-th handshake (1-based): None accepts it, else
#: ``(status, headers)`` rejects it.  Gets the request's headers too.
Reject = Callable[[int, Mapping[str, str]], "tuple[int, Mapping[str, str]] | None"]


async def echo(side: ServerSide) -> None:
    """Send every message back."""
    while True:
        await side.send(await side.recv())


@attrs.define
class WebSocketServer:
    """A running websockets server: its port, the attempts it saw, the links it accepted."""

    port: int
    attempts: Attempts
    sides: list[ServerSide]
    request_headers: list[Mapping[str, str]]
    scheme: str = "ws"
    #: Connections whose handler has not returned yet.
    active: int = 0
    _changed: anyio.Event = attrs.Factory(anyio.Event)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    def _note_active(self, delta: int) -> None:
        self.active += delta
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_active(self, count: int) -> None:
        """Return once exactly ``count`` connection handlers are running."""
        while self.active != count:
            await self._changed.wait()


@contextlib.asynccontextmanager
async def websocket_server(
    handler: Handler = echo,
    *,
    reject: Reject | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_queue: int | None = 16,
    compression: str | None = "deflate",
    close_timeout: float = SERVER_CLOSE_TIMEOUT,
) -> AsyncIterator[WebSocketServer]:
    """A websockets server on 127.0.0.1 for the running backend.

    ``close_timeout``: how long the server waits for the client's close frame before
    it aborts the TCP connection (an abort makes the client's kernel drop what the
    client has not read yet).

    Every handshake request is an attempt (counted before ``reject`` decides).
    ``handler`` runs per accepted connection; the connection closes (1000) when
    it returns, and a ConnectionClosed it lets out is swallowed.  ``compression``
    is websockets' (permessage-deflate when the client offers it).
    """
    attempts = Attempts()
    sides: list[ServerSide] = []
    request_headers: list[Mapping[str, str]] = []

    def process_request(connection: Any, request: Request) -> Response | None:
        attempts.note()
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        request_headers.append(headers)
        if reject is None or (answer := reject(attempts.count, headers)) is None:
            return None
        status, extra = answer
        response: Response = connection.respond(status, "rejected\n")
        for name, value in extra.items():
            response.headers[name] = value
        return response

    server: WebSocketServer | None = None

    async def run(ws: Any) -> None:
        assert server is not None
        side = ServerSide(ws)
        sides.append(side)
        server._note_active(+1)
        try:
            with contextlib.suppress(ConnectionClosed):
                await handler(side)
        finally:
            server._note_active(-1)

    settings: dict[str, Any] = {
        "process_request": process_request,
        "ssl": ssl_context,
        "ping_interval": None,
        "close_timeout": close_timeout,
        "max_queue": max_queue,
        "compression": compression,
    }
    scheme = "ws" if ssl_context is None else "wss"
    if _on_trio():
        import trio
        import websockets.trio.server

        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                websockets.trio.server.serve, run, 0, host="127.0.0.1", **settings
            )
            trio_server = await nursery.start(serve)
            try:
                port = trio_server.listeners[0].socket.getsockname()[1]
                server = WebSocketServer(port, attempts, sides, request_headers, scheme)
                yield server
            finally:
                # Shielded, but bounded: a test must never hang in its server's shutdown.
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await trio_server.aclose()
    else:
        import websockets.asyncio.server

        async with websockets.asyncio.server.serve(run, "127.0.0.1", 0, **settings) as serving:
            port = serving.sockets[0].getsockname()[1]
            server = WebSocketServer(port, attempts, sides, request_headers, scheme)
            yield server


@attrs.define
class RawServer:
    """A bare TCP listener: its port and the connections it accepted (as attempts)."""

    port: int
    attempts: Attempts

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[anyio.abc.SocketStream], Awaitable[None]],
) -> AsyncIterator[RawServer]:
    """A TCP server on 127.0.0.1 running ``handle(stream)`` per accepted connection.

    The stream is closed after ``handle`` returns; leaving cancels every handler.
    """
    attempts = Attempts()

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        attempts.note()
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                await handle(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, serve_one)
        yield RawServer(listener.extra(SocketAttribute.local_port), attempts)
        task_group.cancel_scope.cancel()


async def say_nothing(stream: anyio.abc.SocketStream) -> None:
    """Accept and never answer (a stalled WebSocket handshake)."""
    await anyio.sleep_forever()


async def close_at_once(stream: anyio.abc.SocketStream) -> None:
    """Accept and close (the client sees EOF during its handshake)."""


async def hang_up_after_request(stream: anyio.abc.SocketStream) -> None:
    """Read the handshake request, then close without answering: the client sees the
    end of the stream (a FIN, never a reset: nothing is left unread) during its
    handshake."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive()


async def speak_something_else(stream: anyio.abc.SocketStream) -> None:
    """Answer the handshake request with a line that is not HTTP, then wait (a port
    speaking another protocol that keeps the connection open)."""
    await stream.receive()
    await stream.send(b"SSH-2.0-OpenSSH_9.6\r\n")
    await anyio.sleep_forever()


async def answer_http_400(stream: anyio.abc.SocketStream) -> None:
    """Answer whatever arrives first with a plain-text HTTP 400, then close (a port
    speaking HTTP: ``wss://`` to it gets no TLS handshake)."""
    await stream.receive()
    await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@contextlib.contextmanager
def stalled_listener() -> Iterator[int]:
    """A loopback port where a TCP connect stalls (the SYN is never answered); yields it.

    A socket listening with backlog 0 accepts one connection into its accept queue,
    never accepted here; with that queue full, Linux drops every further SYN (with
    ``tcp_abort_on_overflow`` 0, the default), so the client's connect neither
    succeeds nor fails: it waits for SYN retransmits (1 s, 3 s, ...).
    """
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.settimeout(5)
        filler.connect(listener.getsockname())  # fills the accept queue
        yield listener.getsockname()[1]
