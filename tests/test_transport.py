"""Transports: the conformance suite on both transports and both backends, plus
what is specific to each, and the translation of third-party exceptions."""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.abc
import pytest
import sniffio
import trustme
from anyio.abc import SocketAttribute
from transport_conformance import (
    CLOSE_TIMEOUT,
    TEST_DEADLINE,
    Handler,
    TransportConformance,
    echo,
    options,
)
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import Close
from websockets.http11 import Response
from websockets.utils import accept_key

from fsm_live.errors import HandshakeRejected, TransportError
from fsm_live.transport import errors
from fsm_live.transport.base import Message
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink
from fsm_live.transport.memory import echo as echo_link
from fsm_live.transport.websocket import WebSocketTransport

# -- the websocket transport's harness: real websockets servers on loopback


def _on_trio() -> bool:
    return sniffio.current_async_library() == "trio"


class _WebSocketSide:
    """A websockets server connection (asyncio or trio) as a ServerSide."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._trio = _on_trio()

    @property
    def request_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self._ws.request.headers
        return headers

    async def send(self, message: Message) -> None:
        await self._ws.send(message)

    async def receive(self) -> Message:
        message: Message = await self._ws.recv()
        return message

    async def close(self, code: int, reason: str = "") -> None:
        if self._trio:
            await self._ws.aclose(code, reason)
        else:
            await self._ws.close(code, reason)

    async def drop(self) -> None:
        if self._trio:
            import trio

            await trio.aclose_forcefully(self._ws.stream)
        else:
            self._ws.transport.abort()
        await self._ws.wait_closed()

    async def wait_closed(self) -> int:
        await self._ws.wait_closed()
        code: int = self._ws.close_code
        return code


@contextlib.asynccontextmanager
async def _websockets_server(
    handler: Any, *, process_request: Any = None, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """A websockets server on 127.0.0.1 for the running backend; yields its port."""
    settings: dict[str, Any] = {
        "process_request": process_request,
        "ssl": ssl_context,
        "ping_interval": None,
        "close_timeout": CLOSE_TIMEOUT,
    }
    if _on_trio():
        import trio
        import websockets.trio.server

        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                websockets.trio.server.serve, handler, 0, host="127.0.0.1", **settings
            )
            server = await nursery.start(serve)
            try:
                yield server.listeners[0].socket.getsockname()[1]
            finally:
                with trio.CancelScope(shield=True):
                    await server.aclose()
    else:
        import websockets.asyncio.server

        async with websockets.asyncio.server.serve(
            handler, "127.0.0.1", 0, **settings
        ) as server:
            yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def _raw_server(handle: Any) -> AsyncIterator[int]:
    """A bare TCP server on 127.0.0.1 running ``handle(stream)`` per connection."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield listener.extra(SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def _never_answer(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        await anyio.sleep_forever()


async def _handshake_then_silence(stream: anyio.abc.ByteStream) -> None:
    """Complete the WebSocket handshake by hand, then read and never answer."""
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive()
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        await stream.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key.decode()).encode() + b"\r\n\r\n"
        )
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                await stream.receive()


class WebSocketHarness:
    transport = WebSocketTransport()

    @contextlib.asynccontextmanager
    async def serving(self, handler: Handler) -> AsyncIterator[str]:
        async def run(ws: Any) -> None:
            with contextlib.suppress(ConnectionClosed):
                await handler(_WebSocketSide(ws))

        async with _websockets_server(run) as port:
            yield f"ws://127.0.0.1:{port}/"

    @contextlib.asynccontextmanager
    async def rejecting(self, status: int, headers: Mapping[str, str]) -> AsyncIterator[str]:
        def reject(connection: Any, request: Any) -> Response:
            response: Response = connection.respond(status, "rejected\n")
            for name, value in headers.items():
                response.headers[name] = value
            return response

        async def never(ws: Any) -> None:
            raise AssertionError("the handshake was rejected")

        async with _websockets_server(never, process_request=reject) as port:
            yield f"ws://127.0.0.1:{port}/"

    @contextlib.asynccontextmanager
    async def refusing(self) -> AsyncIterator[str]:
        with socket.socket() as sock:  # a port that was free a moment ago
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"

    @contextlib.asynccontextmanager
    async def stalling(self) -> AsyncIterator[str]:
        async with _raw_server(_never_answer) as port:
            yield f"ws://127.0.0.1:{port}/"

    @contextlib.asynccontextmanager
    async def silent(self) -> AsyncIterator[str]:
        async with _raw_server(_handshake_then_silence) as port:
            yield f"ws://127.0.0.1:{port}/"


# -- the memory transport's harness


class _MemorySide:
    def __init__(self, link: ServerLink) -> None:
        self._link = link

    @property
    def request_headers(self) -> Mapping[str, str]:
        return self._link.request_headers

    async def send(self, message: Message) -> None:
        await self._link.send(message)

    async def receive(self) -> Message:
        return await self._link.receive()

    async def close(self, code: int, reason: str = "") -> None:
        await self._link.close(code, reason)

    async def drop(self) -> None:
        self._link.drop()

    async def wait_closed(self) -> int:
        return await self._link.wait_closed()


class MemoryHarness:
    def __init__(self) -> None:
        self.network = MemoryNetwork()
        self.transport = MemoryTransport(self.network)
        self._count = 0

    def _url(self) -> str:
        self._count += 1
        return f"ws://memory-{self._count}.test/"

    @contextlib.asynccontextmanager
    async def serving(self, handler: Handler) -> AsyncIterator[str]:
        async def run(link: ServerLink) -> None:
            with contextlib.suppress(TransportError):
                await handler(_MemorySide(link))

        url = self._url()
        async with self.network.serve(url, run):
            yield url

    @contextlib.asynccontextmanager
    async def rejecting(self, status: int, headers: Mapping[str, str]) -> AsyncIterator[str]:
        url = self._url()
        self.network.reject(url, status, retry_after=headers.get("Retry-After"))
        yield url

    @contextlib.asynccontextmanager
    async def refusing(self) -> AsyncIterator[str]:
        yield self._url()

    @contextlib.asynccontextmanager
    async def stalling(self) -> AsyncIterator[str]:
        url = self._url()
        self.network.stall(url)
        yield url

    @contextlib.asynccontextmanager
    async def silent(self) -> AsyncIterator[str]:
        url = self._url()
        self.network.black_hole(url)
        yield url


class TestWebSocketTransport(TransportConformance):
    @pytest.fixture
    def harness(self) -> WebSocketHarness:
        return WebSocketHarness()


class TestMemoryTransport(TransportConformance):
    @pytest.fixture
    def harness(self) -> MemoryHarness:
        return MemoryHarness()


# -- the websocket transport only: TLS, compression


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def _client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _tls_echo(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


@pytest.mark.anyio
async def test_wss_with_a_trusted_test_ca(ca: trustme.CA) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with _websockets_server(_tls_echo, ssl_context=_server_tls(ca, "localhost")) as port:
            url = f"wss://localhost:{port}/"
            async with WebSocketTransport().connect(url, options(ssl=_client_tls(ca))) as link:
                await link.send("over TLS")
                assert await link.receive() == "over TLS"


@pytest.mark.anyio
async def test_untrusted_certificate_is_tls(ca: trustme.CA) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with _websockets_server(_tls_echo, ssl_context=_server_tls(ca, "localhost")) as port:
            url = f"wss://localhost:{port}/"
            # ssl=None: the default context, with the system's CAs, verification on.
            with pytest.raises(TransportError) as info:
                async with WebSocketTransport().connect(url, options()):
                    pytest.fail("connected to an untrusted server")
    assert info.value.kind == "tls"
    assert info.value.http_status is None


@pytest.mark.anyio
async def test_wrong_hostname_is_tls(ca: trustme.CA) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        server_tls = _server_tls(ca, "elsewhere.example")
        async with _websockets_server(_tls_echo, ssl_context=server_tls) as port:
            url = f"wss://localhost:{port}/"
            with pytest.raises(TransportError) as info:
                async with WebSocketTransport().connect(url, options(ssl=_client_tls(ca))):
                    pytest.fail("connected to a server with another name")
    assert info.value.kind == "tls"


@pytest.mark.anyio
async def test_ssl_option_is_ignored_for_ws_urls(ca: trustme.CA) -> None:
    harness = WebSocketHarness()
    with anyio.fail_after(TEST_DEADLINE):
        async with harness.serving(echo) as url, \
                harness.transport.connect(url, options(ssl=_client_tls(ca))) as link:
            await link.send("plain")
            assert await link.receive() == "plain"


@pytest.mark.anyio
async def test_compression_round_trips() -> None:
    harness = WebSocketHarness()
    with anyio.fail_after(TEST_DEADLINE):
        async with harness.serving(echo) as url, \
                harness.transport.connect(url, options(compression=True)) as link:
            await link.send("z" * 10_000)
            assert await link.receive() == "z" * 10_000


@pytest.mark.anyio
async def test_no_secret_reaches_websockets_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    harness = WebSocketHarness()
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(TEST_DEADLINE):
        async with harness.serving(echo) as url, \
                harness.transport.connect(url + "?token=s3cr3t-q",
                                          options(headers={"Cookie": "s3cr3t-h"})) as link:
            await link.send("hello s3cr3t-f")
            assert await link.receive() == "hello s3cr3t-f"
    client = [r.getMessage() for r in caplog.records if r.name == "websockets.client"]
    assert "> Cookie: [redacted]" in client  # DEBUG stays on, values go
    assert "> TEXT [14 bytes]" in client
    assert not [line for line in client if "s3cr3t" in line]
    # The check has teeth: the test server, at DEBUG, does log the header.
    assert [r for r in caplog.records if "s3cr3t" in r.getMessage()]


# -- the memory transport only


@pytest.mark.anyio
async def test_memory_counts_attempts_whatever_came_of_them() -> None:
    network = MemoryNetwork()
    transport = MemoryTransport(network)
    with anyio.fail_after(TEST_DEADLINE):
        for _ in range(3):
            with pytest.raises(TransportError):
                async with transport.connect("ws://a.test/", options()):
                    pass
        async with network.serve("ws://a.test/", echo_link), \
                transport.connect("ws://a.test/", options()):
            pass
    assert network.attempts("ws://a.test/") == 4
    assert network.attempts("ws://b.test/") == 0



@pytest.mark.anyio
async def test_memory_overrides_take_precedence_until_restored() -> None:
    network = MemoryNetwork()
    transport = MemoryTransport(network)

    async def attempt() -> str:
        try:
            async with transport.connect("ws://a.test/", options()) as link:
                await link.send("hi")
                return str(await link.receive())
        except TransportError as error:
            return error.reason

    async def tag(name: str, link: ServerLink) -> None:
        await link.receive()
        await link.send(name)

    with anyio.fail_after(TEST_DEADLINE):
        assert await attempt() == "connection refused"
        async with network.serve("ws://a.test/", functools.partial(tag, "first")):
            assert await attempt() == "first"
            network.reject("ws://a.test/", 401)
            assert await attempt() == "HTTP 401 at handshake"
            network.refuse("ws://a.test/", kind="reset")  # the latest override wins
            assert await attempt() == "connection reset"
            network.restore("ws://a.test/")
            assert await attempt() == "first"
            async with network.serve("ws://a.test/", functools.partial(tag, "second")):
                assert await attempt() == "second"
            assert await attempt() == "first"
        assert await attempt() == "connection refused"
    assert network.attempts("ws://a.test/") == 8


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["reset", "dns", "unreachable", "tls", "eof"])
async def test_memory_refuse_with_a_kind(kind: str) -> None:
    network = MemoryNetwork()
    network.refuse("ws://a.test/", kind=kind)
    with anyio.fail_after(TEST_DEADLINE), pytest.raises(TransportError) as info:
        async with MemoryTransport(network).connect("ws://a.test/", options()):
            pass
    assert info.value.kind == kind


def test_memory_rejects_bad_registrations() -> None:
    network = MemoryNetwork()
    with pytest.raises(ValueError, match="kind"):
        network.refuse("ws://a.test/", kind="gremlins")
    with pytest.raises(ValueError, match="status"):
        network.reject("ws://a.test/", 101)


@pytest.mark.anyio
async def test_memory_retry_after_as_http_date() -> None:
    network = MemoryNetwork()
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    network.reject("ws://a.test/", 429, retry_after=later)
    with anyio.fail_after(TEST_DEADLINE), pytest.raises(HandshakeRejected) as info:
        async with MemoryTransport(network).connect("ws://a.test/", options()):
            pass
    assert info.value.http_status == 429
    assert info.value.retry_after is not None
    assert 100 < info.value.retry_after <= 120


@pytest.mark.anyio
async def test_memory_handler_failure_closes_1011_and_propagates() -> None:
    network = MemoryNetwork()

    async def broken(link: ServerLink) -> None:
        raise RuntimeError("server bug")

    codes: list[int | None] = []

    async def scenario() -> None:
        async with network.serve("ws://a.test/", broken):
            async with MemoryTransport(network).connect("ws://a.test/", options()) as link:
                # Shielded: the handler's failure cancels this body at once, but the
                # close with 1011 was delivered before that.
                with anyio.CancelScope(shield=True), pytest.raises(TransportError) as info:
                    await link.receive()
                codes.append(info.value.close_code)
            await anyio.sleep_forever()  # the handler's failure cancels this

    with anyio.fail_after(TEST_DEADLINE), pytest.raises(ExceptionGroup) as group:
        await scenario()
    assert group.group_contains(RuntimeError, match="server bug")
    assert codes == [1011]


@pytest.mark.anyio
async def test_memory_handler_return_closes_1000_and_leaving_serve_1001() -> None:
    network = MemoryNetwork()
    release = anyio.Event()

    async def brief(link: ServerLink) -> None:
        if link.request_headers.get("X-Stay") != "1":
            return
        await release.wait()

    transport = MemoryTransport(network)
    with anyio.fail_after(TEST_DEADLINE):
        async with network.serve("ws://a.test/", brief) as server:
            async with transport.connect("ws://a.test/", options()) as link:
                with pytest.raises(TransportError) as info:
                    await link.receive()
                assert info.value.close_code == 1000
            staying = transport.connect("ws://a.test/", options(headers={"X-Stay": "1"}))
            link = await staying.__aenter__()
        # serve has exited: its open links were closed with 1001, the URL refuses.
        assert link.close_code == 1001
        await staying.__aexit__(None, None, None)
        assert [s.close_code for s in server.links] == [1000, 1001]
        with pytest.raises(TransportError) as refused:
            async with transport.connect("ws://a.test/", options()):
                pass
        assert refused.value.kind == "refused"


@pytest.mark.anyio
async def test_memory_messages_before_the_close_arrive_first() -> None:
    network = MemoryNetwork()

    async def burst(link: ServerLink) -> None:
        for i in range(5):
            await link.send(str(i))
        link.drop()

    with anyio.fail_after(TEST_DEADLINE):
        async with network.serve("ws://a.test/", burst), \
                MemoryTransport(network).connect("ws://a.test/", options()) as link:
            assert [await link.receive() for _ in range(5)] == ["0", "1", "2", "3", "4"]
            with pytest.raises(TransportError) as info:
                await link.receive()
    assert info.value.close_code == 1006


def _mock_clock() -> Any:
    import trio.testing

    return trio.testing.MockClock(autojump_threshold=0)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [pytest.param(("trio", {"clock": _mock_clock()}),
                                                        id="trio-mockclock")])
async def test_memory_runs_in_virtual_time() -> None:
    network = MemoryNetwork()
    transport = MemoryTransport(network)
    network.stall("ws://slow.test/")
    start = anyio.current_time()
    with pytest.raises(TransportError) as info:
        async with transport.connect("ws://slow.test/", options(open_timeout=30.0)):
            pass
    assert info.value.kind == "timeout"
    assert anyio.current_time() - start == pytest.approx(30.0)

    async def half_open(link: ServerLink) -> None:
        await link.send("hello")
        link.black_hole()
        await link.wait_closed()

    async with network.serve("ws://half.test/", half_open):
        start = anyio.current_time()
        async with transport.connect("ws://half.test/", options(close_timeout=5.0)) as link:
            assert await link.receive() == "hello"
            with anyio.move_on_after(30.0):  # a heartbeat timeout, 30 virtual seconds
                await link.ping()
            await link.send("into the void")
        assert link.close_code == 1006
        assert anyio.current_time() - start == pytest.approx(35.0)


# -- translation of third-party exceptions


def _closed(rcvd: int | None, sent: int | None) -> ConnectionClosed:
    return ConnectionClosed(
        None if rcvd is None else Close(rcvd, "r"),
        None if sent is None else Close(sent, "s"),
        None if rcvd is None or sent is None else True,
    )


@pytest.mark.parametrize(
    ("exc", "close_code", "reason"),
    [
        (_closed(1008, 1008), 1008, "closed 1008 (policy violation)"),
        (_closed(4500, None), 4500, "closed 4500 (application code)"),
        (_closed(None, 1009), 1009, "closed 1009 (message too big)"),
        (_closed(None, None), 1006, "closed 1006 (abnormal closure)"),
    ],
)
def test_translate_connection_closed(exc: ConnectionClosed, close_code: int, reason: str) -> None:
    error = errors.translate(exc)
    assert (error.close_code, error.reason, error.kind) == (close_code, reason, None)


def test_an_unanswered_close_by_the_app_is_1006() -> None:
    assert errors.translate(_closed(None, 1000), closed_by_app=True).close_code == 1006
    assert errors.translate(_closed(1000, 1000), closed_by_app=True).close_code == 1000


def test_translate_invalid_status_keeps_no_header_values() -> None:
    headers = Headers({"Set-Cookie": "session=s3cr3t", "Retry-After": "12"})
    error = errors.translate(InvalidStatus(Response(429, "Too Many", headers, b"s3cr3t")))
    assert isinstance(error, HandshakeRejected)
    assert (error.http_status, error.retry_after) == (429, 12.0)
    assert error.reason == "HTTP 429 at handshake"


def test_translate_repeated_retry_after_is_ignored() -> None:
    headers = Headers([("Retry-After", "1"), ("Retry-After", "99")])
    error = errors.translate(InvalidStatus(Response(503, "Busy", headers, b"")))
    assert error.retry_after is None


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidURI("ws://user:s3cr3t@", "bad"), "bad_uri"),
        (_caused(InvalidMessage("no response"), EOFError("eof")), "eof"),
        (_caused(InvalidMessage("no response"), ConnectionResetError()), "reset"),
        (InvalidHeader("Cookie", "s3cr3t"), "eof"),
        (TimeoutError("timed out during opening handshake"), "timeout"),
        (ConnectionRefusedError(111, "refused"), "refused"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
        (socket.gaierror(-2, "Name or service not known"), "dns"),
        # trio: OSError("all attempts ... failed") from an ExceptionGroup of attempts
        (_caused(OSError("all attempts failed"),
                 ExceptionGroup("attempts", [ConnectionRefusedError(111, "x")])), "refused"),
        # trio: BrokenResourceError from the ssl error of the TLS handshake
        (_caused(anyio.BrokenResourceError(),
                 ssl.SSLCertVerificationError(1, "verify failed")), "tls"),
    ],
)
def test_translate_kinds(exc: BaseException, kind: str) -> None:
    error = errors.translate(exc)
    assert error.kind == kind
    assert "s3cr3t" not in error.reason
    assert error.http_status is None
    assert error.close_code is None


def test_translate_unknown_has_no_kind() -> None:
    error = errors.translate(OSError("something odd"))
    assert error.kind is None
    assert error.reason == "transport failure (OSError)"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("٣", None),  # a digit, but not an ASCII one
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert errors.parse_retry_after(value, now=now) == seconds


@pytest.mark.parametrize(("code", "reason"), [(1005, ""), (1006, ""), (999, ""), (5000, ""),
                                              (1000, "x" * 124)])
def test_check_close_rejects_what_cannot_be_sent(code: int, reason: str) -> None:
    with pytest.raises(ValueError, match="close"):
        errors.check_close(code, reason)
