"""Tests for fsm_live.fault_proxy, over real loopback sockets, on asyncio and trio."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import attrs
import pytest
from trio.testing import MockClock

from fsm_live.fault_proxy import Direction, FaultProxy, Faults, ProxyStats

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

TIMEOUT = 5  # seconds, for anyio.fail_after in every test
SILENCE = 0.3  # seconds of "nothing happens" we accept as proof of nothing
#: How late an event may come in real time with both cores busy (the worst seen: 0.24 s);
#: what is "at once" or "without delay" here is bounded by it, and a fault's delay that
#: must be told apart from that is made at least as long.
LATE = 1.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


# -- a recording echo server ---------------------------------------------------


@attrs.define(eq=False)
class ServerConnection:
    """What the upstream server saw on one connection."""

    reads: list[bytes] = attrs.Factory(list)
    outcome: str | None = None  # "eof" or "reset"
    ended_at: float | None = None
    ended: anyio.Event = attrs.Factory(anyio.Event)
    scope: anyio.CancelScope = attrs.Factory(anyio.CancelScope)
    abort_with_reset: bool = False

    @property
    def data(self) -> bytes:
        return b"".join(self.reads)

    def end(self, outcome: str) -> None:
        self.outcome = outcome
        self.ended_at = anyio.current_time()
        self.ended.set()

    def reset(self) -> None:
        """Abort this connection from the server side with a RST."""
        self.abort_with_reset = True
        self.scope.cancel()


class EchoServer:
    """A TCP server on 127.0.0.1 that echoes and records every connection."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.connections: list[ServerConnection] = []
        self._new_connection = anyio.Event()

    async def connection(self, index: int = 0) -> ServerConnection:
        while len(self.connections) <= index:
            await self._new_connection.wait()
        return self.connections[index]

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        conn = ServerConnection()
        self.connections.append(conn)
        self._new_connection.set()
        self._new_connection = anyio.Event()
        try:
            with conn.scope:
                await self._echo(stream, conn)
        finally:
            if conn.abort_with_reset:
                set_linger_zero(stream)
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _echo(self, stream: anyio.abc.SocketStream, conn: ServerConnection) -> None:
        while True:
            try:
                data = await stream.receive()
                conn.reads.append(data)
                await stream.send(data)
            except anyio.EndOfStream:
                conn.end("eof")
                return
            except anyio.BrokenResourceError:
                conn.end("reset")
                return


def set_linger_zero(stream: anyio.abc.SocketStream) -> None:
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@asynccontextmanager
async def echo_server() -> AsyncIterator[EchoServer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = EchoServer(("127.0.0.1", port))
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, server.handle, task_group)
        yield server
        task_group.cancel_scope.cancel()


@asynccontextmanager
async def proxied_echo(seed: int | None = None) -> AsyncIterator[tuple[EchoServer, FaultProxy]]:
    async with echo_server() as server, FaultProxy(upstream=server.address, seed=seed) as proxy:
        yield server, proxy


async def connect(proxy: FaultProxy) -> anyio.abc.SocketStream:
    return await anyio.connect_tcp(*proxy.address)


async def receive_exactly(stream: anyio.abc.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await stream.receive()
    return data


async def receive_until_eof(stream: anyio.abc.SocketStream) -> bytes:
    data = b""
    while True:
        try:
            data += await stream.receive()
        except anyio.EndOfStream:
            return data


async def round_trip(stream: anyio.abc.SocketStream, payload: bytes = b"ping") -> float:
    """Send ``payload`` through the echo server; return how long the echo took."""
    start = anyio.current_time()
    await stream.send(payload)
    assert await receive_exactly(stream, len(payload)) == payload
    return anyio.current_time() - start


async def nothing_arrives(stream: anyio.abc.SocketStream, within: float = SILENCE) -> bool:
    with anyio.move_on_after(within):
        await stream.receive()
        return False
    return True


# -- plain forwarding and lifecycle --------------------------------------------


async def test_forwards_both_ways_and_counts() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy):
            host, port = proxy.address
            assert host == "127.0.0.1"
            assert port == proxy.port != 0
            async with await connect(proxy) as client:
                await round_trip(client, b"hello")
                await proxy.wait_for_links(1)
                assert proxy.stats == ProxyStats(
                    links_accepted=1,
                    links_refused=0,
                    links_open=1,
                    bytes_upstream=5,
                    bytes_downstream=5,
                )
            conn = await server.connection()
            await conn.ended.wait()
            assert conn.outcome == "eof"
            assert conn.data == b"hello"


async def test_half_close_is_propagated() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            await client.send(b"last words")
            await client.send_eof()
            # The server sees EOF, echoes what it got, then closes; the client
            # receives all of it and then an orderly EOF.
            assert await receive_until_eof(client) == b"last words"
            assert (await server.connection()).outcome == "eof"


async def test_exit_closes_links_and_leaves_no_task() -> None:
    with anyio.fail_after(TIMEOUT):
        async with echo_server() as server:
            async with FaultProxy(upstream=server.address) as proxy:
                client = await connect(proxy)
                await round_trip(client)
                address = proxy.address
                assert proxy_tasks()
            assert proxy_tasks() == []
            async with client:
                assert await receive_until_eof(client) == b""
            await (await server.connection()).ended.wait()
            with pytest.raises(OSError, match="connection attempts failed") as error:
                await anyio.connect_tcp(*address)  # nothing listens any more
            assert isinstance(error.value.__cause__, ConnectionRefusedError)


def proxy_tasks() -> list[str]:
    return [
        str(task.name)
        for task in anyio.get_running_tasks()
        if "fsm_live.fault_proxy" in str(task.name)
    ]


async def test_body_exception_propagates_unwrapped() -> None:
    with anyio.fail_after(TIMEOUT):
        async with echo_server() as server:
            with pytest.raises(KeyError):
                async with FaultProxy(upstream=server.address):
                    raise KeyError("boom")


async def test_wait_for_links() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (_, proxy):
            waited = anyio.Event()

            async def wait_for_two() -> None:
                await proxy.wait_for_links(2)
                waited.set()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(wait_for_two)
                async with await connect(proxy) as first:
                    await round_trip(first)
                    assert not waited.is_set()
                    async with await connect(proxy) as second:
                        await waited.wait()
                        assert proxy.stats.links_accepted == 2
                        assert proxy.stats.links_open == 2
                        await round_trip(second)


async def test_upstream_refused_resets_client() -> None:
    with anyio.fail_after(TIMEOUT):
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            dead_address = unused.getsockname()
        async with FaultProxy(upstream=dead_address) as proxy, await connect(proxy) as client:
            with pytest.raises(anyio.BrokenResourceError):
                await client.receive()


def test_faults_are_validated() -> None:
    for bad in (
        {"latency": -1},
        {"jitter": -0.1},
        {"bandwidth": 0},
        {"slice_size": 0},
        {"slice_size": 1.5},
        {"limit_data": -1},
        {"slow_close": -1},
    ):
        with pytest.raises(ValueError, match="Faults"):
            Faults(**bad)
    assert Faults(limit_data=0).limit_data == 0


# -- latency, jitter, bandwidth --------------------------------------------------


async def test_latency_delays_each_direction() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (_, proxy), await connect(proxy) as client:
            proxy.set_faults(Faults(latency=0.1), Direction.DOWNSTREAM)
            one_way = await round_trip(client)
            assert 0.1 <= one_way < 1.0
            proxy.set_faults(Faults(latency=0.1))
            both_ways = await round_trip(client)
            assert 0.2 <= both_ways < 1.0


async def test_latency_is_pipelined_and_keeps_order_despite_jitter() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo(seed=1) as (server, proxy), await connect(proxy) as client:
            proxy.set_faults(Faults(latency=0.5, jitter=0.1), Direction.UPSTREAM)
            messages = [b"%02d;" % i for i in range(10)]
            start = anyio.current_time()
            for message in messages:
                await client.send(message)
                await anyio.sleep(0.02)
            expected = b"".join(messages)
            assert await receive_exactly(client, len(expected)) == expected
            # Pipelined: the sends (0.2 s), one latency and its jitter (0.6 s), late by
            # LATE at most; one by one, the delays would add up to 10 x 0.5 s.
            assert anyio.current_time() - start < 0.2 + 0.6 + LATE
            assert (await server.connection()).data == expected


async def test_bandwidth_caps_throughput() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (_, proxy), await connect(proxy) as client:
            proxy.set_faults(Faults(bandwidth=10_000), Direction.DOWNSTREAM)
            payload = bytes(range(250)) * 20  # 5000 bytes
            elapsed = await round_trip(client, payload)
            assert 0.45 <= elapsed < 2.0
            assert proxy.stats.bytes_downstream == 5000


# -- black hole ------------------------------------------------------------------


async def test_black_hole_stalls_an_open_link_without_closing_it() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            await round_trip(client, b"before")
            proxy.set_faults(Faults(black_hole=True))
            await client.send(b"lost")
            assert await nothing_arrives(client)
            conn = await server.connection()
            assert conn.data == b"before"
            assert not conn.ended.is_set()
            assert proxy.stats.links_open == 1
            # Lifting the black hole resumes forwarding; swallowed bytes stay lost.
            proxy.clear_faults()
            await round_trip(client, b"after")
            assert conn.data == b"beforeafter"


async def test_black_hole_hides_a_close_until_lifted() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            await round_trip(client)
            proxy.set_faults(Faults(black_hole=True), Direction.UPSTREAM)
            await client.send_eof()
            conn = await server.connection()
            with anyio.move_on_after(SILENCE):
                await conn.ended.wait()
            assert not conn.ended.is_set()
            proxy.clear_faults()
            await conn.ended.wait()
            assert conn.outcome == "eof"


# -- reset, drop, down -----------------------------------------------------------


async def test_reset_links_resets_both_peers() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            await round_trip(client)
            await proxy.reset_links()
            assert proxy.stats.links_open == 0
            with pytest.raises(anyio.BrokenResourceError) as error:
                await client.receive()
            assert isinstance(error.value.__cause__, ConnectionResetError)
            conn = await server.connection()
            await conn.ended.wait()
            assert conn.outcome == "reset"


async def test_reset_from_server_is_propagated_to_client() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            await round_trip(client)
            (await server.connection()).reset()
            with pytest.raises(anyio.BrokenResourceError):
                await client.receive()


async def test_drop_links_closes_both_peers_with_eof() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            await round_trip(client)
            await proxy.drop_links()
            assert await receive_until_eof(client) == b""
            conn = await server.connection()
            await conn.ended.wait()
            assert conn.outcome == "eof"


async def test_down_drops_links_and_refuses_new_ones_until_up() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (_, proxy):
            async with await connect(proxy) as client:
                await round_trip(client)
                await proxy.set_down(True)
                assert proxy.is_down
                assert await receive_until_eof(client) == b""
            start = anyio.current_time()
            with pytest.raises((OSError, anyio.BrokenResourceError)):
                async with await connect(proxy) as refused:
                    await refused.receive()
            assert anyio.current_time() - start < LATE  # refused at once, not left hanging
            assert proxy.stats.links_refused == 1
            await proxy.set_down(False)
            async with await connect(proxy) as client:
                await round_trip(client)
            assert proxy.stats.links_accepted == 3


# -- slicer, limit_data, slow_close ------------------------------------------------


async def test_slicer_fragments_without_corrupting() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            proxy.set_faults(Faults(slice_size=1, slice_delay=0.005), Direction.UPSTREAM)
            payload = b"0123456789abcdefghijklmnopqrstuvwxyz"
            await round_trip(client, payload)
            conn = await server.connection()
            assert conn.data == payload
            assert len(conn.reads) >= len(payload) // 2
            assert max(len(read) for read in conn.reads) <= 2


async def test_limit_data_cuts_after_exactly_n_bytes() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy):
            proxy.set_faults(Faults(limit_data=100), Direction.DOWNSTREAM)
            async with await connect(proxy) as client:
                await client.send(b"x" * 200)
                assert await receive_until_eof(client) == b"x" * 100
            conn = await server.connection()
            await conn.ended.wait()
            assert proxy.stats.bytes_downstream == 100


async def test_limit_data_set_on_open_link_counts_from_then() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (_, proxy), await connect(proxy) as client:
            await round_trip(client, b"a" * 50)
            proxy.set_faults(Faults(limit_data=10), Direction.DOWNSTREAM)
            await client.send(b"b" * 50)
            assert await receive_until_eof(client) == b"b" * 10


async def test_slow_close_delays_the_fin() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (server, proxy):
            proxy.set_faults(Faults(slow_close=0.2), Direction.UPSTREAM)
            async with await connect(proxy) as client:
                await round_trip(client)
                closed_at = anyio.current_time()
            conn = await server.connection()
            await conn.ended.wait()
            assert conn.ended_at is not None
            assert 0.2 <= conn.ended_at - closed_at < 1.0


# -- faults changed while a link is open -------------------------------------------


async def test_latency_change_applies_to_open_link() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (_, proxy), await connect(proxy) as client:
            # Without latency a round trip takes about 1 ms: LATE on a busy machine.
            assert await round_trip(client) < LATE
            proxy.set_faults(Faults(latency=LATE), Direction.UPSTREAM)
            assert await round_trip(client) >= LATE
            proxy.clear_faults()
            assert await round_trip(client) < LATE


async def test_clearing_faults_releases_delayed_data_at_once() -> None:
    with anyio.fail_after(TIMEOUT):
        async with proxied_echo() as (_, proxy), await connect(proxy) as client:
            proxy.set_faults(Faults(latency=60))
            await client.send(b"stuck")
            assert await nothing_arrives(client, 0.1)
            released_at = anyio.current_time()
            proxy.clear_faults()
            assert await receive_exactly(client, 5) == b"stuck"
            assert anyio.current_time() - released_at < LATE  # not after the 60 s latency


# -- robustness and clocks -----------------------------------------------------------


async def test_actions_and_exit_right_after_accept_leave_nothing_open() -> None:
    with anyio.fail_after(TIMEOUT):
        async with echo_server() as server:
            clients: list[anyio.abc.SocketStream] = []
            try:
                async with FaultProxy(upstream=server.address) as proxy:
                    clients += [await connect(proxy) for _ in range(5)]
                    await proxy.wait_for_links(5)
                    await proxy.reset_links()  # some links are still connecting upstream
                    assert proxy.stats.links_open == 0
                    clients += [await connect(proxy) for _ in range(5)]
                    await proxy.wait_for_links(10)
                # Exited while the last links were being set up.
                assert proxy_tasks() == []
            finally:
                for client in clients:
                    await client.aclose()


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0.01)}), id="trio-mockclock")],
)
@pytest.mark.timeout(60)
async def test_time_faults_follow_trio_mock_clock() -> None:
    start_real = time.monotonic()
    with anyio.fail_after(1000):  # virtual seconds; pytest-timeout bounds real time
        async with proxied_echo() as (server, proxy), await connect(proxy) as client:
            proxy.set_faults(Faults(latency=30), Direction.DOWNSTREAM)
            assert await round_trip(client) >= 30
            proxy.set_faults(Faults(bandwidth=1000), Direction.UPSTREAM)
            assert await round_trip(client, b"x" * 1000) >= 30 + 0.95
            proxy.set_faults(Faults(slow_close=60), Direction.UPSTREAM)
            closed_at = anyio.current_time()
            await client.send_eof()
            conn = await server.connection()
            await conn.ended.wait()
            assert conn.ended_at is not None
            assert conn.ended_at - closed_at >= 60
    # Over 90 s of faults' delays took virtual time: a few real seconds, on a busy machine.
    assert time.monotonic() - start_real < 30
