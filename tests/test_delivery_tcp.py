"""Delivery promises over real sockets, on asyncio and trio (docs/architecture.md, rule 10).

What virtual time cannot show: a kernel's buffers filling under a peer that stops
reading, a TCP reset, latency that keeps frames in flight while a link closes.
Bounds are generous (a busy machine only makes these slower), and nothing here
asserts on time.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.abc
import pytest
from proxies import http_connect_proxy, socks5_proxy
from servers import ServerSide, websocket_server
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from fsm_live import Config, LiveConnection, connect
from fsm_live.fault_proxy import FaultProxy, Faults

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CONFIG = Config(heartbeat_interval=5, heartbeat_timeout=12, planned_reconnect_delay=0.05)

Handler = Callable[[anyio.abc.SocketStream, ServerProtocol], Awaitable[None]]


@contextlib.asynccontextmanager
async def sans_io_server(handler: Handler) -> AsyncIterator[int]:
    """A WebSocket server on 127.0.0.1 from websockets' Sans-I/O ``ServerProtocol`` over
    an anyio TCP stream (so it runs on both backends and controls its own reads):
    each accepted connection is handshaken, then handed to ``handler``.  Yields the port."""

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        protocol = ServerProtocol()
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                while True:
                    protocol.receive_data(await stream.receive())
                    requests = [e for e in protocol.events_received() if isinstance(e, Request)]
                    if requests:
                        protocol.send_response(protocol.accept(requests[0]))
                        for data in protocol.data_to_send():
                            await stream.send(data)
                        break
                await handler(stream, protocol)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, serve_one)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        task_group.cancel_scope.cancel()


def reset(stream: anyio.abc.SocketStream) -> None:
    """Make the stream's close a TCP reset (SO_LINGER 0)."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_a_frame_send_waited_on_when_the_peer_resets_is_sent_again() -> None:
    """Issue item 2: a server that stops reading, then resets the TCP connection.
    ``send(k)`` waits for the write buffer; once the link breaks it returns, and k
    (with every frame still in this process) reaches the server on the next link."""
    reset_now = anyio.Event()
    second_link: list[str] = []
    done = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        if not reset_now.is_set():  # the first link: read nothing, then reset
            await reset_now.wait()
            reset(stream)
            return
        while True:
            protocol.receive_data(await stream.receive())
            for event in protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    second_link.append(event.data.decode())
                    if second_link[-1] == "last":
                        done.set()

    big = "x" * (256 * 1024)
    with anyio.fail_after(50):
        async with (
            sans_io_server(handler) as port,
            connect(f"ws://127.0.0.1:{port}/", config=CONFIG) as conn,
        ):
            await conn.wait_connected()
            sent = 0
            while True:  # until send() waits: every buffer on the way is full
                with anyio.move_on_after(1) as waited:
                    await conn.send(f"{sent} {big}")
                sent += 1
                if waited.cancelled_caught:
                    break
                assert sent < 1000, "send() never waited"
            reset_now.set()
            await conn.wait_for("RECONNECTING", "CONNECTING")
            await conn.wait_connected()
            await conn.send("last")
            await done.wait()
    numbers = [int(frame.split()[0]) for frame in second_link[:-1]]
    assert numbers, "nothing was sent again"
    # The frame send() waited on, and those before it still in this process, in order.
    assert numbers == list(range(numbers[0], sent))
    assert conn.stats().resent == len(numbers)


async def test_messages_in_flight_on_a_rotated_link_reach_the_application() -> None:
    """Issue item 3: 30 ms of latency each way, a server pushing steadily, three
    rotations in a row: every message the server sent reaches the application
    exactly once, those still in flight on the old link included, each link's in
    its order.  (Across links there is no order to keep: the old and the new link's
    server handlers push at the same time.)"""
    pushed: list[tuple[int, int]] = []  # (link, number on it), once written
    links = 0

    async def push(side: ServerSide) -> None:
        nonlocal links
        link, links = links, links + 1
        for number in range(1_000_000):
            await side.send(f"{link} {number}")  # raises once the link is closing
            pushed.append((link, number))
            await anyio.sleep(0.002)

    got: list[tuple[int, int]] = []
    changed = anyio.Event()

    async def read(conn: LiveConnection) -> None:
        nonlocal changed
        async for message in conn:
            link, number = message.split()
            got.append((int(link), int(number)))
            changed.set()
            changed = anyio.Event()

    async def until_the_link_delivered(link: int, count: int) -> None:
        while sum(1 for item in got if item[0] == link) < count:
            await changed.wait()

    with anyio.fail_after(55):
        async with (
            websocket_server(push, compression=None) as server,
            FaultProxy(upstream=("127.0.0.1", server.port)) as proxy,
        ):
            proxy.set_faults(Faults(latency=0.03))
            async with connect(f"ws://127.0.0.1:{proxy.port}/", config=CONFIG) as conn:
                await conn.wait_connected()
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(read, conn)
                    for link in range(3):
                        await until_the_link_delivered(link, 30)
                        await conn.rotate("test")
                        await conn.wait_connected()
                    await until_the_link_delivered(3, 30)
                    await conn.close()
    assert conn.stats().transitions[("CONNECTED", "rotate", "CONNECTING")] == 3
    for link in range(4):
        numbers = [number for (on, number) in got if on == link]
        assert numbers == sorted(numbers), f"link {link} out of order"
    last_link = [item for item in pushed if item[0] == 3]
    # Every message of the rotated links, once each; of the last, all but what was in
    # flight when the test closed it.
    assert sorted(item for item in got if item[0] < 3) == sorted(i for i in pushed if i[0] < 3)
    assert len(got) == len(set(got))
    assert len(last_link) - sum(1 for item in got if item[0] == 3) <= 20


async def test_a_frame_that_never_completes_is_not_life_over_tcp() -> None:
    """Issue 16 item 7 (rule 8) on both backends over real sockets: a peer that answers
    no ping and trickles one byte a second inside a frame it never finishes is lost
    for silence, not kept alive by its bytes."""
    await _lost_to_a_trickle(proxy=None)


@pytest.mark.parametrize("kind", ["http", "socks5h"])
async def test_a_frame_that_never_completes_is_not_life_through_a_proxy(kind: str) -> None:
    """Issue 16 item 7 (rule 8) with the third kind of link: through an HTTP CONNECT
    or SOCKS5 proxy (python-socks' tunnel, read as an anyio byte stream on both
    backends), the trickle is no more life than over a direct TCP link."""
    proxy_cm = http_connect_proxy() if kind == "http" else socks5_proxy()
    async with proxy_cm as proxy:
        await _lost_to_a_trickle(proxy=proxy.url(kind))
    assert proxy.tunnels  # it went through the proxy


async def _lost_to_a_trickle(proxy: str | None) -> None:
    """A server that announces a 65,535-byte frame, then sends one byte of it a second
    and reads nothing: the client connected to it (through ``proxy`` if given) goes
    RECONNECTING for silence (the heartbeat timeout), with no message delivered."""
    config = Config(heartbeat_interval=0.5, heartbeat_timeout=2, close_timeout=1)
    trickling = anyio.Event()

    async def trickle(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        await stream.send(b"\x81\x7e\xff\xff")  # a text frame of 65,535 bytes, announced
        trickling.set()
        while True:  # never reads: pings go unanswered
            await anyio.sleep(1)
            await stream.send(b"a")

    with anyio.fail_after(50):
        async with (
            sans_io_server(trickle) as port,
            connect(
                f"ws://127.0.0.1:{port}/",
                config=config,
                proxy=True if proxy is None else proxy,  # True: the environment's
            ) as conn,
        ):
            await conn.wait_connected()
            await trickling.wait()
            await conn.wait_for("RECONNECTING")
            stats = conn.stats()
    assert stats.transitions[("CONNECTED", "lost", "RECONNECTING")] == 1
    assert "heartbeat" in stats.last_error
    assert stats.messages_in == 0


async def test_leaving_from_another_task_arms_nothing_on_either_backend() -> None:
    """Issue 16 item 6 on both backends (asyncio has no task group per connection;
    trio has one): left from another task, the connection closes with one clear
    error, and the task that entered it is not cancelled afterwards."""
    from contextlib import AsyncExitStack

    from fsm_live.errors import UsageError
    from fsm_live.transport.memory import MemoryNetwork, MemoryTransport

    network = MemoryNetwork()
    url = "ws://server.test/feed"
    stack = AsyncExitStack()
    with anyio.fail_after(30):
        async with network.serve(url, lambda link: anyio.sleep_forever()):
            conn = await stack.enter_async_context(
                connect(url, config=CONFIG, transport=MemoryTransport(network))
            )
            await conn.wait_connected()
            caught: list[BaseException] = []

            async def leave() -> None:
                try:
                    await stack.aclose()
                except UsageError as exc:
                    caught.append(exc)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(leave)
            assert len(caught) == 1
            assert conn.state == "CLOSED"
            with anyio.CancelScope() as scope:
                await anyio.sleep(1)  # the stray deadline used to strike at 0.3 s
            assert not scope.cancel_called
            await conn.__aexit__(None, None, None)
