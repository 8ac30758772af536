"""Transports, at the connection level: the conformance suite four ways, then TLS,
proxies, compression and what reaches websockets' DEBUG log on the TCP transport,
the memory network's own behaviour, and the translation of third-party exceptions.

The four ways (see ``transport_conformance.py``):

* ``TestTcpOnAsyncio``: the default :class:`TcpTransport` on asyncio, through its
  ``open_asyncio`` (an ``asyncio.Protocol``, no task per link);
* ``TestTcpOnTrio``: the same transport on trio, through ``open_stream``;
* ``TestTcpStreamOnAsyncio``: a transport with only ``open_stream`` on asyncio (the
  stream path, with its reader and writer jobs, on asyncio);
* ``TestMemoryInVirtualTime``: the :class:`MemoryTransport` on trio's MockClock.

TLS, proxies, compression and logging run on the three TCP ways (``variant``).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from proxies import Proxy, http_connect_proxy, socks5_proxy
from servers import (
    RawServer,
    ServerSide,
    WebSocketServer,
    answer_http_400,
    hang_up_after_request,
    raw_server,
    say_nothing,
    speak_something_else,
    websocket_server,
)
from transport_conformance import (
    CONFIG,
    TEST_DEADLINE,
    Answer,
    Handler,
    Recorder,
    Side,
    TransportConformance,
    echo,
    first_then,
)
from trio.testing import MockClock
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

from fsm_live import ConfigError, Secret, connect
from fsm_live.connection import LiveConnection
from fsm_live.errors import HandshakeRejected
from fsm_live.fault_proxy import Direction, FaultProxy, Faults
from fsm_live.transport import errors
from fsm_live.transport.base import Message, Target, Transport
from fsm_live.transport.memory import (
    PIPE_LIMIT,
    MemoryNetwork,
    MemoryServer,
    MemoryTransport,
    ServerLink,
)
from fsm_live.transport.tcp import TcpTransport

# -- the environment ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no proxy variable set (a developer's own would route
    the loopback servers through it); the proxy tests set their own."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


def _free_port() -> int:
    """A loopback port nothing listens on (free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the TCP harness: real websockets servers on 127.0.0.1 --------------------------------


class StreamOnlyTransport:
    """The default transport without ``open_asyncio``: the stream path on asyncio."""

    def __init__(self) -> None:
        self._tcp = TcpTransport()

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        return await self._tcp.open_stream(target)


class _TcpServed:
    def __init__(
        self, url: str, server: WebSocketServer | RawServer, proxy: FaultProxy | None = None
    ) -> None:
        self.url = url
        self._server = server
        self._proxy = proxy

    def attempts(self) -> int:
        return self._server.attempts.count

    def black_hole(self) -> None:
        assert self._proxy is not None, "serve with black_holes=True"
        self._proxy.set_faults(Faults(black_hole=True))

    def stop_reading(self) -> None:
        assert self._proxy is not None, "serve with black_holes=True"
        self._proxy.set_faults(Faults(black_hole=True), Direction.UPSTREAM)


class TcpHarness:
    """Real sockets: websockets' server for the running backend, a fault proxy in
    front where a black hole is needed."""

    margin = 0.5
    watch = 0.6

    def __init__(
        self, transport: Transport | None = None, *, tasks_when_connected: int = 0
    ) -> None:
        self.transport = transport
        self.tasks_when_connected = tasks_when_connected

    def connect(self, url: str, **options: Any) -> LiveConnection:
        options.setdefault("config", CONFIG)
        options.setdefault("random", lambda: 1.0)
        if self.transport is not None:
            options.setdefault("transport", self.transport)
        return connect(url, **options)

    @contextlib.asynccontextmanager
    async def serving(
        self,
        handler: Handler,
        *,
        answer: Answer | None = None,
        black_holes: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> AsyncIterator[_TcpServed]:
        reject = None if answer is None else (lambda n, _headers: answer(n))
        async with websocket_server(handler, reject=reject, ssl_context=ssl_context) as server:
            if not black_holes:
                yield _TcpServed(server.url, server)
                return
            async with FaultProxy(upstream=("127.0.0.1", server.port)) as proxy:
                yield _TcpServed(f"{server.scheme}://127.0.0.1:{proxy.port}/", server, proxy)

    @contextlib.asynccontextmanager
    async def refusing(self) -> AsyncIterator[str]:
        yield f"ws://127.0.0.1:{_free_port()}/"

    @contextlib.asynccontextmanager
    async def hanging_up(self) -> AsyncIterator[_TcpServed]:
        async with raw_server(hang_up_after_request) as raw:
            yield _TcpServed(raw.url, raw)

    @contextlib.asynccontextmanager
    async def stalling(self) -> AsyncIterator[_TcpServed]:
        async with raw_server(say_nothing) as raw:
            yield _TcpServed(raw.url, raw)


class TestTcpOnAsyncio(TransportConformance):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def harness(self) -> TcpHarness:
        return TcpHarness()


class TestTcpOnTrio(TransportConformance):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "trio"

    @pytest.fixture
    def harness(self) -> TcpHarness:
        return TcpHarness(tasks_when_connected=2)


class TestTcpStreamOnAsyncio(TransportConformance):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def harness(self) -> TcpHarness:
        return TcpHarness(StreamOnlyTransport(), tasks_when_connected=1)


# -- the memory harness: the in-memory network in virtual time ----------------------------


class _MemorySide:
    """A memory :class:`ServerLink` as a conformance :class:`Side`."""

    def __init__(self, link: ServerLink) -> None:
        self.link = link

    @property
    def request_headers(self) -> Mapping[str, str]:
        return self.link.request_headers

    async def send(self, message: Message, *, text: bool | None = None) -> None:
        await self.link.send(message, text=text)

    async def send_fragments(
        self, fragments: Sequence[Message], *, text: bool | None = None
    ) -> None:
        await self.link.send_fragments(fragments, text=text)

    async def recv(self) -> Message:
        return await self.link.receive()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.link.close(code, reason)

    async def drop(self) -> None:
        self.link.drop()

    async def ping(self, data: bytes = b"") -> None:
        await self.link.ping(data)

    async def wait_closed(self) -> int | None:
        return await self.link.wait_closed()


class _AnsweringTransport(MemoryTransport):
    """A memory transport that sets a URL's reject override before each attempt, as
    the URL's :data:`Answer` says for that attempt."""

    def __init__(self, network: MemoryNetwork) -> None:
        super().__init__(network)
        self.answers: dict[str, Answer] = {}

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        answer = self.answers.get(target.url)
        if answer is not None:
            verdict = answer(self.network.attempts(target.url) + 1)
            if verdict is None:
                self.network.restore(target.url)
            else:
                status, headers = verdict
                self.network.reject(target.url, status, retry_after=headers.get("Retry-After"))
        return await super().open_stream(target)


class _MemoryServed:
    def __init__(
        self, url: str, network: MemoryNetwork, server: MemoryServer | None = None
    ) -> None:
        self.url = url
        self._network = network
        self._server = server

    def attempts(self) -> int:
        return self._network.attempts(self.url)

    def black_hole(self) -> None:
        assert self._server is not None
        for link in self._server.links:
            link.black_hole()

    def stop_reading(self) -> None:
        assert self._server is not None
        for link in self._server.links:
            link.pause_reading()


class MemoryHarness:
    margin = 1e-6  # virtual time: exact but for float rounding
    watch = 10.0  # virtual seconds: cost nothing
    tasks_when_connected = 2

    def __init__(self) -> None:
        self.network = MemoryNetwork()
        self.transport = _AnsweringTransport(self.network)
        self._count = 0

    def _url(self) -> str:
        self._count += 1
        return f"ws://memory-{self._count}.test/"

    def connect(self, url: str, **options: Any) -> LiveConnection:
        options.setdefault("config", CONFIG)
        options.setdefault("random", lambda: 1.0)
        return connect(url, transport=self.transport, **options)

    @contextlib.asynccontextmanager
    async def serving(
        self, handler: Handler, *, answer: Answer | None = None, black_holes: bool = False
    ) -> AsyncIterator[_MemoryServed]:
        async def run(link: ServerLink) -> None:
            await handler(_MemorySide(link))

        url = self._url()
        if answer is not None:
            self.transport.answers[url] = answer
        async with self.network.serve(url, run) as server:
            yield _MemoryServed(url, self.network, server)

    @contextlib.asynccontextmanager
    async def refusing(self) -> AsyncIterator[str]:
        yield self._url()

    @contextlib.asynccontextmanager
    async def hanging_up(self) -> AsyncIterator[_MemoryServed]:
        url = self._url()
        self.network.hang_up(url)
        yield _MemoryServed(url, self.network)

    @contextlib.asynccontextmanager
    async def stalling(self) -> AsyncIterator[_MemoryServed]:
        url = self._url()
        self.network.stall(url)
        yield _MemoryServed(url, self.network)


class TestMemoryInVirtualTime(TransportConformance):
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    @pytest.fixture
    def harness(self) -> MemoryHarness:
        return MemoryHarness()


# -- the TCP transport's own: TLS, proxies, compression, logs -----------------------------

_VARIANTS: dict[str, tuple[str, Transport | None]] = {
    "asyncio": ("asyncio", None),
    "trio": ("trio", None),
    "asyncio-stream": ("asyncio", StreamOnlyTransport()),
}


@pytest.fixture(params=list(_VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(variant: str) -> str:
    return _VARIANTS[variant][0]


@pytest.fixture
def tcp(variant: str) -> TcpHarness:
    return TcpHarness(_VARIANTS[variant][1])


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


async def _watch_attempts(recorder: Recorder, tcp: TcpHarness) -> int:
    """Connection attempts the client made, after watching for more."""
    await anyio.sleep(tcp.watch)
    return len(recorder.entries("CONNECTING"))


# TLS


@pytest.mark.anyio
async def test_wss_with_a_trusted_test_ca(tcp: TcpHarness, ca: trustme.CA) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with tcp.serving(echo, ssl_context=_server_tls(ca, "127.0.0.1")) as served:
            assert served.url.startswith("wss://")
            async with tcp.connect(served.url, ssl=_client_tls(ca)) as conn:
                recorder = Recorder(conn)
                await conn.wait_connected()
                await conn.send("over TLS")
                assert await anext(aiter(conn)) == "over TLS"
    assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "names", [("127.0.0.1",), ("elsewhere.example",)], ids=["untrusted", "wrong-host-name"]
)
async def test_a_certificate_that_fails_verification_is_tls_and_fatal(
    tcp: TcpHarness, ca: trustme.CA, names: tuple[str, ...]
) -> None:
    """Untrusted (the default context: the system's CAs) or issued for another name
    (the test CA trusted): kind tls, class fatal, one attempt, FAILED until reset."""
    trusted = names != ("127.0.0.1",)
    options: dict[str, Any] = {"ssl": _client_tls(ca)} if trusted else {}
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo, ssl_context=_server_tls(ca, *names)) as served,
            tcp.connect(served.url, **options) as conn,
        ):
            recorder = Recorder(conn)
            failed = await recorder.reach("FAILED")
            assert conn.needs_reset
            attempts = await _watch_attempts(recorder, tcp)
    failure = recorder.failure(failed)
    assert (failure.error_class, failure.kind) == ("fatal", "tls")
    assert failure.reason == "TLS certificate or hostname verification failed"
    assert attempts == 1
    assert served.attempts() == 0  # no handshake reached the server


@pytest.mark.anyio
async def test_the_ssl_option_is_ignored_for_ws_urls(tcp: TcpHarness, ca: trustme.CA) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo) as served,
            tcp.connect(served.url, ssl=_client_tls(ca)) as conn,
        ):
            await conn.wait_connected()
            await conn.send("plain")
            assert await anext(aiter(conn)) == "plain"


@pytest.mark.anyio
async def test_wss_to_a_port_without_tls_is_tls_handshake_and_retried(tcp: TcpHarness) -> None:
    """A port speaking plain HTTP answers the TLS hello with HTTP: a TLS handshake
    failure (class network, retried), not a certificate failure."""
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            raw_server(answer_http_400) as raw,
            tcp.connect(raw.url.replace("ws://", "wss://")) as conn,
        ):
            recorder = Recorder(conn)
            await recorder.reach("CONNECTING", 3)
    for index in (1, 3):
        failure = recorder.failure(index)
        assert (failure.error_class, failure.kind) == ("network", "tls_handshake")
        assert "certificate" not in failure.reason
    assert raw.attempts.count >= 2


@pytest.mark.anyio
async def test_wss_to_a_plain_websocket_server_is_tls_handshake_and_retried(
    tcp: TcpHarness,
) -> None:
    """The same against websockets' own server without TLS: it hangs up on the TLS
    hello (asyncio's TLS reports that as a reset, anyio's as an end of stream): a
    failure of the TLS handshake on every path, class network, retried."""
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo) as served,
            tcp.connect(served.url.replace("ws://", "wss://")) as conn,
        ):
            recorder = Recorder(conn)
            await recorder.reach("CONNECTING", 3)
    for index in (1, 3):
        failure = recorder.failure(index)
        assert (failure.error_class, failure.kind) == ("network", "tls_handshake")
        assert failure.reason == "TLS handshake failed (does the server speak TLS on this port?)"
    assert served.attempts() == 0  # no WebSocket handshake reached it


@pytest.mark.anyio
async def test_an_answer_that_is_not_http_fails_the_attempt_at_once(tcp: TcpHarness) -> None:
    """websockets gives up on an answer it cannot parse (it produces no response event);
    the attempt fails then, not at open_timeout, though the server keeps the
    connection open."""
    with anyio.fail_after(TEST_DEADLINE):
        async with raw_server(speak_something_else) as raw, tcp.connect(raw.url) as conn:
            recorder = Recorder(conn)
            failed = await recorder.reach("RECONNECTING")
    failure = recorder.failure(failed)
    assert (failure.error_class, failure.kind) == ("network", "eof")
    assert failure.reason == "invalid handshake answer (InvalidMessage)"
    assert recorder.records[failed].at - recorder.records[0].at <= tcp.margin
    assert tcp.margin < CONFIG.open_timeout


# proxies


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "http-password", "socks5", "socks5h", "socks5h-password"])
async def test_an_explicit_proxy(tcp: TcpHarness, kind: str) -> None:
    scheme, _, password = kind.partition("-")
    user = ("alice", "s3cr3t") if password else None
    proxy_cm = (
        http_connect_proxy(credentials=user) if scheme == "http" else socks5_proxy(credentials=user)
    )
    with anyio.fail_after(TEST_DEADLINE):
        async with tcp.serving(echo) as served, proxy_cm as proxy:
            url = proxy.url(scheme, "alice:s3cr3t" if user else None)
            async with tcp.connect(served.url, proxy=url) as conn:
                recorder = Recorder(conn)
                await conn.wait_connected()
                await conn.send("through the proxy")
                assert await anext(aiter(conn)) == "through the proxy"
    port = int(served.url.rsplit(":", 1)[1].strip("/"))
    [tunnel] = proxy.tunnels
    assert (tunnel.host, tunnel.port) == ("127.0.0.1", port)
    if kind.startswith("socks5"):
        assert tunnel.address_type == "ipv4"
    assert proxy.credentials_seen == ([user] if user else [])
    assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks5h"])
@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_the_proxy_resolves_the_host_name(
    tcp: TcpHarness, ca: trustme.CA, kind: str, secure: bool
) -> None:
    """HTTP CONNECT and socks5h name the host to the proxy: ``echo.test`` is known only
    to it.  Over wss:// the certificate is checked for that name inside the tunnel."""
    hosts = {"echo.test": "127.0.0.1"}
    proxy_cm = http_connect_proxy(hosts=hosts) if kind == "http" else socks5_proxy(hosts=hosts)
    server_tls = _server_tls(ca, "echo.test") if secure else None
    options: dict[str, Any] = {"ssl": _client_tls(ca)} if secure else {}
    with anyio.fail_after(TEST_DEADLINE):
        async with tcp.serving(echo, ssl_context=server_tls) as served, proxy_cm as proxy:
            url = served.url.replace("127.0.0.1", "echo.test")
            async with tcp.connect(url, proxy=proxy.url(kind), **options) as conn:
                await conn.wait_connected()
                await conn.send("by name")
                assert await anext(aiter(conn)) == "by name"
    [tunnel] = proxy.tunnels
    assert (tunnel.host, tunnel.address_type) == ("echo.test", None if kind == "http" else "domain")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("variable", "kind", "value_scheme"),
    [
        ("http_proxy", "http", "http"),
        ("HTTP_PROXY", "http", "http"),
        ("https_proxy", "http", "http"),  # websockets prefers it to http_proxy for ws://
        ("ws_proxy", "http", "http"),
        ("socks_proxy", "socks", "socks5h"),
        ("socks_proxy", "socks", "http"),  # socks_proxy=http://h:p means SOCKS5 (websockets)
    ],
)
async def test_a_proxy_from_the_environment(
    tcp: TcpHarness, monkeypatch: pytest.MonkeyPatch, variable: str, kind: str, value_scheme: str
) -> None:
    proxy_cm = http_connect_proxy() if kind == "http" else socks5_proxy()
    with anyio.fail_after(TEST_DEADLINE):
        async with tcp.serving(echo) as served, proxy_cm as proxy:
            monkeypatch.setenv(variable, proxy.url(value_scheme))
            async with tcp.connect(served.url) as conn:
                await conn.wait_connected()
    assert len(proxy.tunnels) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["no_proxy", "proxy=None", "all_proxy", "http_proxy-for-wss"])
async def test_when_the_environment_s_proxy_is_not_used(
    tcp: TcpHarness, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """``no_proxy`` bypasses it, ``proxy=None`` disables it, ``all_proxy`` is not read
    (websockets does not), and ``http_proxy`` is not used for ``wss://``."""
    secure = case == "http_proxy-for-wss"
    options: dict[str, Any] = {"ssl": _client_tls(ca)} if secure else {}
    server_tls = _server_tls(ca, "127.0.0.1") if secure else None
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo, ssl_context=server_tls) as served,
            http_connect_proxy() as proxy,
        ):
            monkeypatch.setenv(
                "all_proxy" if case == "all_proxy" else "http_proxy", proxy.url("http")
            )
            if case == "no_proxy":
                monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
            if case == "proxy=None":
                options["proxy"] = None
            async with tcp.connect(served.url, **options) as conn:
                await conn.wait_connected()
    assert proxy.connections == 0


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks5h"])
async def test_wss_through_a_proxy(tcp: TcpHarness, ca: trustme.CA, kind: str) -> None:
    """TLS to the server runs inside the tunnel: the proxy sees only ciphertext."""
    proxy_cm = http_connect_proxy() if kind == "http" else socks5_proxy()
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo, ssl_context=_server_tls(ca, "127.0.0.1")) as served,
            proxy_cm as proxy,
            tcp.connect(served.url, ssl=_client_tls(ca), proxy=proxy.url(kind)) as conn,
        ):
            await conn.wait_connected()
            await conn.send("secret inside TLS")
            assert await anext(aiter(conn)) == "secret inside TLS"
    assert len(proxy.tunnels) == 1


@pytest.mark.anyio
async def test_wss_takes_https_proxy_from_the_environment(
    tcp: TcpHarness, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo, ssl_context=_server_tls(ca, "127.0.0.1")) as served,
            http_connect_proxy() as proxy,
        ):
            monkeypatch.setenv("https_proxy", proxy.url("http"))
            async with tcp.connect(served.url, ssl=_client_tls(ca)) as conn:
                await conn.wait_connected()
    assert len(proxy.tunnels) == 1


@contextlib.asynccontextmanager
async def _refusing_proxy(kind: str) -> AsyncIterator[tuple[str, Proxy | None]]:
    """A proxy URL that will not open a tunnel, and the proxy (None: nothing listens)."""
    if kind == "down":
        yield f"http://127.0.0.1:{_free_port()}", None
    elif kind == "http-403":
        async with http_connect_proxy(refuse=True) as proxy:
            yield proxy.url("http"), proxy
    elif kind == "http-407":
        async with http_connect_proxy(credentials=("alice", "right")) as proxy:
            yield proxy.url("http", "alice:wrong"), proxy
    elif kind == "socks-refused":
        async with socks5_proxy(refuse=True) as proxy:
            yield proxy.url("socks5h"), proxy
    else:
        assert kind == "socks-bad-password"
        async with socks5_proxy(credentials=("alice", "right")) as proxy:
            yield proxy.url("socks5h", "alice:wrong"), proxy


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "failure_kind"),
    [
        ("down", "refused"),
        ("http-403", "unreachable"),
        ("http-407", "unreachable"),
        ("socks-refused", "unreachable"),
        ("socks-bad-password", "unreachable"),
    ],
)
async def test_a_proxy_that_does_not_open_the_tunnel(
    tcp: TcpHarness, kind: str, failure_kind: str
) -> None:
    """A clear kind, class network, and retried; the server never sees an attempt."""
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo) as served,
            _refusing_proxy(kind) as (url, proxy),
            tcp.connect(served.url, proxy=url) as conn,
        ):
            recorder = Recorder(conn)
            await recorder.reach("CONNECTING", 3)
    for index in (1, 3):
        failure = recorder.failure(index)
        assert (failure.error_class, failure.kind) == ("network", failure_kind)
        assert "wrong" not in failure.reason
    if proxy is not None:
        assert proxy.connections >= 2
        assert proxy.tunnels == []
    assert served.attempts() == 0


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("ftp://x", "'ftp://x'"),
        ("https://alice:s3cr3t@proxy.example:3128", "'https://alice:***@proxy.example:3128'"),
        (
            "http://alice:s3cr3t@proxy.example:3128/path",
            "'http://alice:***@proxy.example:3128/path'",
        ),
        ("socks5h://alice@proxy.example:1080", "'socks5h://alice@proxy.example:1080'"),
    ],
)
def test_an_unusable_proxy_url_is_a_config_error(proxy: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        connect("ws://127.0.0.1:9/", proxy=proxy)
    assert info.value.field == "proxy"
    assert str(info.value).startswith(f"proxy: {shown}: ")
    assert "s3cr3t" not in str(info.value)


def test_an_unusable_proxy_from_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", "https://alice:s3cr3t@proxy.example:3128")
    with pytest.raises(ConfigError, match="https:// proxies are not supported") as info:
        connect("ws://127.0.0.1:9/")
    assert "s3cr3t" not in str(info.value)
    connect("ws://127.0.0.1:9/", proxy=None)  # no proxy: nothing to object to


# compression


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [True, False])
async def test_compression(tcp: TcpHarness, compression: bool) -> None:
    """With ``compression=True`` permessage-deflate is negotiated (and the bytes on the
    wire shrink); without it the client offers no extension."""
    sides: list[ServerSide] = []
    text, binary = "z" * 100_000, bytes(50_000)

    async def record(side: Side) -> None:
        assert isinstance(side, ServerSide)
        sides.append(side)
        await echo(side)

    config = CONFIG.replace(compression=compression)
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            websocket_server(record) as server,
            FaultProxy(upstream=("127.0.0.1", server.port)) as wire,
            tcp.connect(f"ws://127.0.0.1:{wire.port}/", config=config) as conn,
        ):
            await conn.wait_connected()
            await conn.send(text)
            await conn.send(binary)
            iterator = aiter(conn)
            assert await anext(iterator) == text
            assert await anext(iterator) == binary
            stats = wire.stats
    [side] = sides
    offered = side.request_headers.get("Sec-WebSocket-Extensions", "")
    accepted = side.response_headers.get("Sec-WebSocket-Extensions", "")
    wire = (stats.bytes_upstream, stats.bytes_downstream)
    if compression:
        assert offered.startswith("permessage-deflate")
        assert accepted.startswith("permessage-deflate")
        assert max(wire) < 5_000  # 150 kB of messages each way
    else:
        assert (offered, accepted) == ("", "")
        assert min(wire) > 150_000


@pytest.mark.anyio
async def test_a_compressed_message_over_max_size_is_1009(tcp: TcpHarness) -> None:
    """2 MB of zeros deflate to about 2 kB on the wire; inflated they are over
    max_size: 1009, terminal, however small the frame was."""

    async def bomb(side: Side) -> None:
        await side.send(bytes(2_000_000))
        await side.wait_closed()

    config = CONFIG.replace(compression=True)
    with anyio.fail_after(TEST_DEADLINE):
        async with tcp.serving(bomb) as served, tcp.connect(served.url, config=config) as conn:
            recorder = Recorder(conn)
            failed = await recorder.reach("FAILED")
    failure = recorder.failure(failed)
    assert (failure.error_class, failure.close_code) == ("terminal", 1009)


# secrets in logs


class _Credentials:
    async def handshake_headers(self) -> Mapping[str, Secret]:
        return {
            "Cookie": Secret("session=s3cr3t-cookie"),
            "Authorization": Secret("Bearer s3cr3t-bearer"),
        }

    async def refresh(self) -> bool:
        return False

    async def escalate(self) -> bool:
        return False


@pytest.mark.anyio
@pytest.mark.parametrize("authorization", ["credentials", "url"])
async def test_no_secret_reaches_websockets_debug_log(
    tcp: TcpHarness, caplog: pytest.LogCaptureFixture, authorization: str
) -> None:
    """Cookie and Authorization from a credentials provider (or Authorization from the
    URL's user info), a query string token, frame contents: none at DEBUG."""
    caplog.set_level(logging.DEBUG)
    seen: list[Mapping[str, str]] = []

    async def record(side: Side) -> None:
        seen.append(side.request_headers)
        await echo(side)

    if authorization == "url":
        credentials = None
        expected = {"Authorization": "Basic YWxpY2U6czNjcjN0LXVzZXJpbmZv"}
    else:
        credentials = _Credentials()
        expected = {"Cookie": "session=s3cr3t-cookie", "Authorization": "Bearer s3cr3t-bearer"}
    with anyio.fail_after(TEST_DEADLINE):
        async with tcp.serving(record) as served:
            url = served.url + "?token=s3cr3t-query"
            if authorization == "url":
                url = url.replace("ws://", "ws://alice:s3cr3t-userinfo@")
            async with tcp.connect(url, credentials=credentials) as conn:
                await conn.wait_connected()
                await conn.send("hello s3cr3t-frame")
                await conn.send(b"bytes s3cr3t-frame")
                iterator = aiter(conn)
                assert await anext(iterator) == "hello s3cr3t-frame"
                assert await anext(iterator) == b"bytes s3cr3t-frame"
    # The secrets did reach the server, once each.
    [headers] = seen
    for name, value in expected.items():
        assert headers.get_all(name) == [value]  # type: ignore[attr-defined]
    formatter = logging.Formatter("%(message)s")
    client = [formatter.format(r) for r in caplog.records if r.name == "websockets.client"]
    assert "> GET /?[redacted] HTTP/1.1" in client  # DEBUG stays on, values go
    for name in expected:
        assert f"> {name}: [redacted]" in client
    assert "> TEXT [18 bytes]" in client
    assert "< BINARY [18 bytes]" in client
    assert not [line for line in client if "s3cr3t" in line]
    ours = [formatter.format(r) for r in caplog.records if r.name.startswith("fsm_live")]
    assert not [line for line in ours if "s3cr3t" in line]
    # The check has teeth: the test server, at DEBUG, does log them.
    assert [
        r
        for r in caplog.records
        if r.name.startswith("websockets.server") and "s3cr3t" in r.getMessage()
    ]


# -- the memory network's own behaviour ---------------------------------------------------

_VIRTUAL = pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
_MEMORY_URL = "ws://a.test/"


def _memory_connect(
    network: MemoryNetwork, url: str = _MEMORY_URL, **options: Any
) -> LiveConnection:
    options.setdefault("config", CONFIG)
    options.setdefault("random", lambda: 1.0)
    return connect(url, transport=MemoryTransport(network), **options)


async def _first_failure(
    network: MemoryNetwork, url: str = _MEMORY_URL, **options: Any
) -> tuple[str, str]:
    """Connect once: what happened ("connected", or the failure's class and reason)."""
    async with _memory_connect(network, url, **options) as conn:
        recorder = Recorder(conn)
        index = await recorder.reach("CONNECTING", 1)
        while len(recorder.records) == index + 1:
            await conn.wait_changed()
        if recorder.states[index + 1] == "CONNECTED":
            return "connected", ""
        failure = recorder.failure(index + 1)
        return failure.error_class, failure.reason


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_overrides_take_precedence_until_restored() -> None:
    network = MemoryNetwork()
    with anyio.fail_after(TEST_DEADLINE):
        assert await _first_failure(network) == ("network", "connection refused")
        async with network.serve(_MEMORY_URL, echo_link):
            assert await _first_failure(network) == ("connected", "")
            network.reject(_MEMORY_URL, 401)
            assert await _first_failure(network) == ("auth", "HTTP 401 at handshake")
            network.refuse(_MEMORY_URL, kind="reset")  # the latest override wins
            assert await _first_failure(network) == ("network", "connection reset")
            network.black_hole(_MEMORY_URL)
            assert await _first_failure(network) == ("connected", "")
            network.hang_up(_MEMORY_URL)
            assert await _first_failure(network) == (
                "network",
                "connection closed during the handshake",
            )
            network.stall(_MEMORY_URL)
            assert await _first_failure(network) == ("network", "open timeout")
            network.restore(_MEMORY_URL)
            assert await _first_failure(network) == ("connected", "")
        assert await _first_failure(network) == ("network", "connection refused")
    assert network.attempts(_MEMORY_URL) == 9
    assert network.attempts("ws://b.test/") == 0


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_the_latest_serve_serves() -> None:
    network = MemoryNetwork()

    async def tag(name: str, link: ServerLink) -> None:
        await link.send(name)
        await link.wait_closed()

    async def first_message() -> Any:
        async with _memory_connect(network) as conn:
            return await anext(aiter(conn))

    with anyio.fail_after(TEST_DEADLINE):
        async with network.serve(_MEMORY_URL, functools.partial(tag, "first")):
            assert await first_message() == "first"
            async with network.serve(_MEMORY_URL, functools.partial(tag, "second")):
                assert await first_message() == "second"
            assert await first_message() == "first"


@pytest.mark.anyio
@_VIRTUAL
@pytest.mark.parametrize("kind", ["reset", "dns", "unreachable", "tls", "eof", "timeout"])
async def test_memory_refuse_with_a_kind(kind: str) -> None:
    network = MemoryNetwork()
    network.refuse(_MEMORY_URL, kind=kind)
    with anyio.fail_after(TEST_DEADLINE):
        async with _memory_connect(network) as conn:
            recorder = Recorder(conn)
            index = (
                await recorder.reach("RECONNECTING")
                if kind != "tls"
                else await recorder.reach("FAILED")
            )
    assert recorder.failure(index).kind == kind


def test_memory_rejects_bad_overrides() -> None:
    network = MemoryNetwork()
    with pytest.raises(ValueError, match="kind"):
        network.refuse(_MEMORY_URL, kind="gremlins")
    with pytest.raises(ValueError, match="status"):
        network.reject(_MEMORY_URL, 101)


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_retry_after_as_an_http_date() -> None:
    network = MemoryNetwork()
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    network.reject(_MEMORY_URL, 429, retry_after=later)
    with anyio.fail_after(TEST_DEADLINE):
        async with _memory_connect(network) as conn:
            recorder = Recorder(conn)
            index = await recorder.reach("RECONNECTING")
    failure = recorder.failure(index)
    assert (failure.error_class, failure.http_status) == ("throttled", 429)
    assert failure.retry_after is not None
    assert 100 < failure.retry_after <= 120


async def echo_link(link: ServerLink) -> None:
    while True:
        await link.send(await link.receive())


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_a_handler_that_raises_closes_1011_and_propagates() -> None:
    network = MemoryNetwork()

    async def broken(link: ServerLink) -> None:
        await link.receive()
        raise RuntimeError("server bug")

    failures: list[Any] = []

    async def scenario() -> None:
        async with network.serve(_MEMORY_URL, broken), _memory_connect(network) as conn:
            recorder = Recorder(conn)
            await conn.wait_connected()
            await conn.send("trigger")
            # Shielded: the handler's failure cancels this body, but the close with
            # 1011 reached the client first.
            with anyio.CancelScope(shield=True):
                index = await recorder.reach("RECONNECTING")
                failures.append(recorder.failure(index))
            await anyio.sleep_forever()  # the handler's failure cancels this

    with anyio.fail_after(TEST_DEADLINE), pytest.raises(ExceptionGroup) as group:
        await scenario()
    assert group.group_contains(RuntimeError, match="server bug")
    [failure] = failures
    assert (failure.error_class, failure.close_code) == ("lost", 1011)


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_a_handler_that_returns_closes_1000_and_leaving_serve_1001() -> None:
    network = MemoryNetwork()
    release = anyio.Event()

    async def brief_then_stay(link: ServerLink) -> None:
        if len(server.links) > 1:
            await release.wait()

    stop = anyio.Event()

    async def serve_until_stopped(*, task_status: anyio.abc.TaskStatus[MemoryServer]) -> None:
        async with network.serve(_MEMORY_URL, brief_then_stay) as server:
            task_status.started(server)
            await stop.wait()

    with anyio.fail_after(TEST_DEADLINE):
        async with anyio.create_task_group() as task_group:
            server = await task_group.start(serve_until_stopped)
            async with _memory_connect(network) as conn:
                recorder = Recorder(conn)
                await recorder.reach("CONNECTED", 2)
                stop.set()  # leaving serve while connected
                await recorder.reach("RECONNECTING", 3)
    assert [link.close_code for link in server.links] == [1000, 1001]
    planned, left, refused = (recorder.failure(i) for i in recorder.entries("RECONNECTING"))
    assert [(f.error_class, f.close_code) for f in (planned, left)] == [
        ("planned", 1000),
        ("planned", 1001),
    ]
    assert (refused.error_class, refused.kind) == ("network", "refused")


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_a_server_that_stops_reading_pushes_back() -> None:
    """pause_reading: the client's bytes wait; past PIPE_LIMIT its writer waits, past
    the write buffer's high mark ``send()`` waits; resume_reading delivers all in order."""
    network = MemoryNetwork()
    got: list[Message] = []
    paused = anyio.Event()
    release = anyio.Event()
    done = anyio.Event()

    async def slow_reader(link: ServerLink) -> None:
        link.pause_reading()
        paused.set()
        await release.wait()
        link.resume_reading()
        while (message := await link.receive()) != b"last":
            got.append(message)
        done.set()

    chunk = bytes(64 * 1024)
    # A peer that reads nothing answers no ping either: it is lost after
    # heartbeat_timeout, so that is longer than the wait here.
    config = CONFIG.replace(heartbeat_interval=20, heartbeat_timeout=60)
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            network.serve(_MEMORY_URL, slow_reader),
            _memory_connect(network, config=config) as conn,
        ):
            await conn.wait_connected()
            await paused.wait()
            sent = 0
            while True:
                with anyio.move_on_after(5) as waiting:
                    await conn.send(chunk)
                sent += 1  # queued, even when the wait for room was cut short
                if waiting.cancelled_caught:
                    break
            assert conn.state == "CONNECTED"  # backpressure, not a failure
            # PIPE_LIMIT in the pipe, then the write buffer up to its high mark (64 KiB;
            # the link writes in 64 KiB pieces, so where it stops depends on framing).
            assert PIPE_LIMIT <= sent * len(chunk) <= PIPE_LIMIT + 2 * len(chunk)
            release.set()
            await conn.send(b"last")
            await done.wait()
    assert got == [chunk] * sent


@pytest.mark.anyio
@_VIRTUAL
@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("drop", "closed 1006 (abnormal closure)"),
        ("reset", "closed 1006 (abnormal closure: connection reset)"),
    ],
)
async def test_memory_reset_and_drop_both_read_1006(
    how: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """drop(): the client's stream ends (EOF); reset(): it breaks.  Both are 1006,
    class lost; the reason tells them apart.  The client is reading when it happens
    (the message before it was just taken)."""
    network = MemoryNetwork()

    async def end(link: ServerLink) -> None:
        await link.send("before")
        await anyio.sleep(1)
        await link.send("just before")
        getattr(link, how)()
        await anyio.sleep_forever()

    with anyio.fail_after(TEST_DEADLINE):
        async with (
            network.serve(_MEMORY_URL, first_then(end)) as server,
            _memory_connect(network) as conn,
        ):
            recorder = Recorder(conn)
            assert await anext(aiter(conn)) == "before"
            index = await recorder.reach("RECONNECTING")
    failure = recorder.failure(index)
    assert (failure.error_class, failure.close_code, failure.reason) == ("lost", 1006, reason)
    assert server.links[0].close_code == 1006
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_a_black_hole_override_answers_nothing() -> None:
    """black_hole(url): the handshake completes, then nothing: found at heartbeat_timeout."""
    network = MemoryNetwork()
    network.black_hole(_MEMORY_URL)
    with anyio.fail_after(TEST_DEADLINE):
        async with _memory_connect(network) as conn:
            recorder = Recorder(conn)
            connected = await recorder.reach("CONNECTED")
            lost = await recorder.reach("RECONNECTING")
    assert recorder.records[lost].at - recorder.records[connected].at == pytest.approx(
        CONFIG.heartbeat_timeout
    )
    assert recorder.failure(lost).kind == "heartbeat_timeout"


# -- translation of third-party exceptions ------------------------------------------------


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
        (_closed(3000, None), 3000, "closed 3000 (registered code)"),
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


def _proxy_errors() -> list[Any]:
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError

    return [
        (ProxyError("Connection not allowed by ruleset", error_code=2), "unreachable"),
        (ProxyConnectionError(111, "Could not connect to proxy 127.0.0.1:1 [refused]"), "refused"),
        # trio/anyio: errno None, the refusal in the causes' exception group
        (
            _caused(
                ProxyConnectionError(None, "Could not connect to proxy"),
                _caused(
                    OSError("All connection attempts failed"),
                    ExceptionGroup("attempts", [ConnectionRefusedError(111, "x")]),
                ),
            ),
            "refused",
        ),
        (ProxyTimeoutError("Proxy connection timed out: 60"), "timeout"),
    ]


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
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls_handshake"),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "eof"),
        (socket.gaierror(-2, "Name or service not known"), "dns"),
        (OSError(101, "Network is unreachable"), "unreachable"),
        # trio: OSError("all attempts ... failed") from an ExceptionGroup of attempts
        (
            _caused(
                OSError("all attempts failed"),
                ExceptionGroup("attempts", [ConnectionRefusedError(111, "x")]),
            ),
            "refused",
        ),
        # trio: BrokenResourceError from the ssl error of the TLS handshake
        (
            _caused(anyio.BrokenResourceError(), ssl.SSLCertVerificationError(1, "verify failed")),
            "tls",
        ),
        *_proxy_errors(),
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
    ("exc", "kind"),
    [
        (ssl.SSLCertVerificationError(1, "x"), "tls"),
        (ssl.CertificateError("x"), "tls"),
        (ssl.SSLZeroReturnError(6, "x"), "eof"),
        (anyio.EndOfStream(), "eof"),
        (ssl.SSLError(1, "x"), "tls_handshake"),
        (ConnectionAbortedError(), "reset"),
        (BrokenPipeError(), "reset"),
        (anyio.BrokenResourceError(), "reset"),
        (OSError(113, "No route to host"), "unreachable"),
        (OSError(111, "refused, as a plain OSError"), "refused"),
        (ValueError("not a transport failure"), None),
    ],
)
def test_failure_kind(exc: BaseException, kind: str | None) -> None:
    assert errors.failure_kind(exc) == kind


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),
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


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1005, ""), (1006, ""), (1015, ""), (999, ""), (5000, ""), (1000, "x" * 124)],
)
def test_check_close_rejects_what_cannot_be_sent(code: int, reason: str) -> None:
    with pytest.raises(ValueError, match="close"):
        errors.check_close(code, reason)


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, ""), (1001, "x" * 123), (3000, ""), (4999, "bye")]
)
def test_check_close_accepts_what_can_be_sent(code: int, reason: str) -> None:
    errors.check_close(code, reason)


@pytest.mark.anyio
@_VIRTUAL
async def test_memory_a_reset_as_the_client_starts_reading_is_a_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server resets each link as its handshake completes, while the client's
    reader may be between seeing the response and taking it: always a reset (the
    handshake's, or the open link's 1006), never a crash of the reader."""
    network = MemoryNetwork()

    async def reset(link: ServerLink) -> None:
        link.reset()

    # 30 resets in a row: the endpoint rule (which would make the endpoint down after
    # three and the connection wait for it) is held off, as this is about each reset.
    config = CONFIG.replace(endpoint_failures=100)
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            network.serve(_MEMORY_URL, reset),
            _memory_connect(network, config=config) as conn,
        ):
            recorder = Recorder(conn)
            await recorder.reach("RECONNECTING", 30)
    for index in recorder.entries("RECONNECTING"):
        failure = recorder.failure(index)
        assert failure.kind == "reset" or failure.close_code == 1006, failure
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.anyio
async def test_a_certificate_failure_through_a_proxy_is_tls_and_leaves_nothing_open(
    tcp: TcpHarness, ca: trustme.CA
) -> None:
    """TLS fails inside the tunnel: kind tls, class fatal; the tunnel is closed (the
    proxy sees its client end the tunnel), nothing is left for the garbage collector."""
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            tcp.serving(echo, ssl_context=_server_tls(ca, "127.0.0.1")) as served,
            http_connect_proxy() as proxy,
            tcp.connect(served.url, proxy=proxy.url("http")) as conn,
        ):
            recorder = Recorder(conn)
            failed = await recorder.reach("FAILED")
            await proxy.wait_tunnels_closed()
    assert (recorder.failure(failed).error_class, recorder.failure(failed).kind) == ("fatal", "tls")
    assert len(proxy.tunnels) == 1
