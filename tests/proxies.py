"""Small local proxies for tests: HTTP CONNECT and SOCKS5, on any anyio backend.

Each listens on 127.0.0.1 (port 0), counts the TCP connections it accepted and the
tunnels it opened (with their destinations), and can be told to refuse every
tunnel (HTTP 403; SOCKS5 reply 0x02, "not allowed by ruleset") or to require a
username and password (HTTP ``Proxy-Authorization: Basic``; SOCKS5 method 0x02).
``hosts`` maps host names to addresses for the proxy's own connections (so a test
can name a server ``echo.test`` that only the proxy can resolve; nothing is looked
up in DNS).  A tunnel copies bytes both ways until either side ends, then closes
both.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
import anyio.abc
import attrs
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ("Proxy", "Tunnel", "http_connect_proxy", "socks5_proxy")

_STREAM_ENDS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@attrs.frozen
class Tunnel:
    """A tunnel a proxy opened: the destination as the client named it."""

    host: str
    port: int
    #: SOCKS5 only: how the client named the host (``"ipv4"``, ``"domain"``, ``"ipv6"``).
    address_type: str | None = None


@attrs.define
class Proxy:
    """A running proxy: its port, the connections it accepted, the tunnels it opened."""

    port: int
    connections: int = 0
    tunnels: list[Tunnel] = attrs.Factory(list)
    #: Credentials sent by clients (HTTP: the decoded Basic pair; SOCKS5: the pair).
    credentials_seen: list[tuple[str, str]] = attrs.Factory(list)
    #: Tunnels open now (both ends still connected).
    open_tunnels: int = 0
    _changed: anyio.Event = attrs.Factory(anyio.Event)

    def _note_tunnels(self, delta: int) -> None:
        self.open_tunnels += delta
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_tunnels_closed(self) -> None:
        """Return once no tunnel is open."""
        while self.open_tunnels:
            await self._changed.wait()

    def url(self, scheme: str, user_info: str | None = None) -> str:
        at = f"{user_info}@" if user_info else ""
        return f"{scheme}://{at}127.0.0.1:{self.port}"


async def _pipe(
    proxy: Proxy,
    client: anyio.abc.ByteStream,
    reader: BufferedByteReceiveStream,
    upstream: anyio.abc.ByteStream,
) -> None:
    """Copy both ways until one side ends; then both are closed."""
    proxy._note_tunnels(+1)
    try:
        await _copy_both_ways(client, reader, upstream)
    finally:
        proxy._note_tunnels(-1)


async def _copy_both_ways(
    client: anyio.abc.ByteStream, reader: BufferedByteReceiveStream, upstream: anyio.abc.ByteStream
) -> None:
    async with upstream, anyio.create_task_group() as task_group:

        async def copy(
            receive: Callable[[], Awaitable[bytes]], send: anyio.abc.ByteSendStream
        ) -> None:
            with contextlib.suppress(*_STREAM_ENDS):
                while True:
                    await send.send(await receive())
            task_group.cancel_scope.cancel()

        if reader.buffer:  # bytes the client sent right after its request
            await upstream.send(bytes(reader.buffer))
        task_group.start_soon(copy, client.receive, upstream)
        task_group.start_soon(copy, upstream.receive, client)


@contextlib.asynccontextmanager
async def _serving(
    proxy_factory: Callable[[int], Proxy],
    handle: Callable[[Proxy, anyio.abc.SocketStream], Awaitable[None]],
) -> AsyncIterator[Proxy]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy = proxy_factory(listener.extra(SocketAttribute.local_port))

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        proxy.connections += 1
        async with stream:
            with contextlib.suppress(*_STREAM_ENDS, anyio.IncompleteRead):
                await handle(proxy, stream)

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, serve_one)
        yield proxy
        task_group.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def http_connect_proxy(
    *,
    refuse: bool = False,
    credentials: tuple[str, str] | None = None,
    hosts: Mapping[str, str] | None = None,
) -> AsyncIterator[Proxy]:
    """An HTTP proxy that only does CONNECT."""

    async def handle(proxy: Proxy, client: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(client)
        head = await reader.receive_until(b"\r\n\r\n", 65536)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, authority, _ = request_line.split(" ")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        if method != "CONNECT":
            await client.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if credentials is not None:
            scheme, _, encoded = headers.get("proxy-authorization", "").partition(" ")
            user, _, password = (
                base64.b64decode(encoded).decode().partition(":")
                if scheme.lower() == "basic"
                else ("", "", "")
            )
            proxy.credentials_seen.append((user, password))
            if (user, password) != credentials:
                await client.send(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\n\r\n"
                )
                return
        if refuse:
            await client.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = authority.rpartition(":")
        host = host.strip("[]")
        try:
            upstream = await anyio.connect_tcp((hosts or {}).get(host, host), int(port))
        except OSError:
            await client.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        proxy.tunnels.append(Tunnel(host, int(port)))
        await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await _pipe(proxy, client, reader, upstream)

    async with _serving(Proxy, handle) as proxy:
        yield proxy


_SOCKS_ADDRESS_TYPES = {1: "ipv4", 3: "domain", 4: "ipv6"}


@contextlib.asynccontextmanager
async def socks5_proxy(
    *,
    refuse: bool = False,
    credentials: tuple[str, str] | None = None,
    hosts: Mapping[str, str] | None = None,
) -> AsyncIterator[Proxy]:
    """A SOCKS5 proxy (RFC 1928) doing CONNECT, with no authentication or with a
    username and password (RFC 1929)."""

    async def handle(proxy: Proxy, client: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(client)
        version, count = await reader.receive_exactly(2)
        methods = await reader.receive_exactly(count)
        wanted = 0x00 if credentials is None else 0x02
        if version != 5 or wanted not in methods:
            await client.send(b"\x05\xff")
            return
        await client.send(bytes([5, wanted]))
        if credentials is not None:
            _, user_length = await reader.receive_exactly(2)
            user = (await reader.receive_exactly(user_length)).decode()
            (password_length,) = await reader.receive_exactly(1)
            password = (await reader.receive_exactly(password_length)).decode()
            proxy.credentials_seen.append((user, password))
            if (user, password) != credentials:
                await client.send(b"\x01\x01")
                return
            await client.send(b"\x01\x00")
        _, command, _, address_type = await reader.receive_exactly(4)
        if address_type == 1:
            host = str(ipaddress.IPv4Address(await reader.receive_exactly(4)))
        elif address_type == 3:
            (length,) = await reader.receive_exactly(1)
            host = (await reader.receive_exactly(length)).decode()
        else:
            host = str(ipaddress.IPv6Address(await reader.receive_exactly(16)))
        (port,) = struct.unpack("!H", await reader.receive_exactly(2))
        failure = b"\x05%c\x00\x01\x00\x00\x00\x00\x00\x00"
        if command != 1:
            await client.send(failure % 7)  # command not supported
            return
        if refuse:
            await client.send(failure % 2)  # not allowed by ruleset
            return
        try:
            upstream = await anyio.connect_tcp((hosts or {}).get(host, host), port)
        except OSError:
            await client.send(failure % 5)  # connection refused
            return
        proxy.tunnels.append(Tunnel(host, port, _SOCKS_ADDRESS_TYPES[address_type]))
        await client.send(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        await _pipe(proxy, client, reader, upstream)

    async with _serving(Proxy, handle) as proxy:
        yield proxy
