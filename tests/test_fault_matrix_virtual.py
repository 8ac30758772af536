"""The fault matrix's timed figures, exact, in virtual time.

``tests/test_fault_matrix.py`` runs each row against a real websockets server through a
real TCP proxy, in real time: there a figure can only be bounded with room for a busy
machine.  Each row with a timed figure has its twin here, with the matrix's settings
(``CONFIG``), on the in-memory network (:mod:`fsm_live.transport.memory`) and trio's
``MockClock(autojump_threshold=0)``: the same fault, and the figure asserted exactly
(``pytest.approx`` for float sums).  The twin of row N is ``test_NN_...``.

Latency (row 5) comes from :class:`DelayedTransport`, which holds each chunk of bytes
for a fixed time each way.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from test_fault_matrix import CONFIG
from trio.testing import MockClock

from fsm_live import ConnectionFailed, ExponentialJitter, Secret, connect
from fsm_live.connection import LiveConnection
from fsm_live.core.effects import TransitionRecord
from fsm_live.transport.base import Target
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink, echo

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

URL = "ws://matrix.test/"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork()


class Recorder:
    """Every transition of a connection, as it happened."""

    def __init__(self, conn: LiveConnection) -> None:
        self.records: list[TransitionRecord] = []
        conn.on_transition(self.records.append)

    def at(self, source: str, dest: str) -> float:
        """When the first ``source -> dest`` transition happened."""
        return next(r.at for r in self.records if (r.source, r.dest) == (source, dest))

    def entries(self, state: str) -> list[float]:
        """When ``state`` was entered, each time."""
        return [r.at for r in self.records if r.dest == state]


def live(url: str, transport: Any, **options: Any) -> LiveConnection:
    options.setdefault("config", CONFIG)
    options.setdefault("random", lambda: 1.0)
    return connect(url, transport=transport, **options)


async def commands(link: ServerLink) -> None:
    """Echo, except ``close:CODE``: close with CODE."""
    while True:
        message = await link.receive()
        if isinstance(message, str) and message.startswith("close:"):
            await link.close(int(message.removeprefix("close:")))
            return
        await link.send(message)


# -- a link with latency ---------------------------------------------------------------


class _Delayed(anyio.abc.ByteStream):
    """``inner``, with each chunk of bytes delivered ``delay`` seconds after it was sent,
    both ways, in order (as a network path with that one-way latency)."""

    def __init__(self, inner: anyio.abc.ByteStream, delay: float) -> None:
        self._inner = inner
        self._delay = delay
        # (due, chunk); None for the end of the stream, which arrives late too.
        self._incoming: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._outgoing: collections.deque[tuple[float, bytes]] = collections.deque()
        self._arrived = anyio.Event()
        self._queued = anyio.Event()
        self._ended: type[Exception] = anyio.EndOfStream
        self._scope = anyio.CancelScope()

    async def carry(self) -> None:
        """Move the bytes both ways until closed (run in a task)."""
        with self._scope:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._carry_in)
                task_group.start_soon(self._carry_out)

    async def _carry_in(self) -> None:
        while True:
            try:
                chunk: bytes | None = await self._inner.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                self._ended, chunk = type(exc), None
            self._incoming.append((anyio.current_time() + self._delay, chunk))
            self._arrived.set()
            self._arrived = anyio.Event()
            if chunk is None:
                return

    async def _carry_out(self) -> None:
        while True:
            while not self._outgoing:
                await self._queued.wait()
                self._queued = anyio.Event()
            due, chunk = self._outgoing.popleft()
            await anyio.sleep_until(due)
            await self._inner.send(chunk)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._incoming:
            await self._arrived.wait()
        due, chunk = self._incoming[0]
        await anyio.sleep_until(due)
        if chunk is None:
            raise self._ended
        if len(chunk) > max_bytes:
            self._incoming[0] = (due, chunk[max_bytes:])
            return chunk[:max_bytes]
        self._incoming.popleft()
        return chunk

    async def send(self, item: bytes) -> None:
        self._outgoing.append((anyio.current_time() + self._delay, bytes(item)))
        self._queued.set()
        await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    def input_pending(self) -> bool:
        """True while bytes that have arrived (their latency over) wait to be received."""
        return bool(self._incoming) and self._incoming[0][0] <= anyio.current_time()

    async def aclose(self) -> None:
        self._scope.cancel()
        await self._inner.aclose()


class DelayedTransport:
    """A :class:`MemoryTransport` whose links have ``delay`` seconds of latency each way;
    their bytes are carried by tasks of ``task_group``."""

    def __init__(
        self, network: MemoryNetwork, delay: float, task_group: anyio.abc.TaskGroup
    ) -> None:
        self._inner = MemoryTransport(network)
        self._delay = delay
        self._task_group = task_group

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        stream = _Delayed(await self._inner.open_stream(target), self._delay)
        self._task_group.start_soon(stream.carry)
        return stream


@asynccontextmanager
async def delayed(network: MemoryNetwork, delay: float) -> AsyncIterator[DelayedTransport]:
    async with anyio.create_task_group() as task_group:
        yield DelayedTransport(network, delay, task_group)
        task_group.cancel_scope.cancel()


class _Silent(anyio.abc.ByteStream):
    """A connection that was accepted and never says anything."""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()


class SilentTransport:
    """Every attempt connects, and the handshake is never answered."""

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        return _Silent()


# -- the rows --------------------------------------------------------------------------


async def test_01_half_open_found_at_heartbeat_timeout(network: MemoryNetwork) -> None:
    """Lost exactly heartbeat_timeout after the last inbound frame (the echo that
    arrived as the link went half-open)."""
    black_hole_at: list[float] = []
    async with network.serve(URL, echo) as server:

        async def on_message(message: Any) -> None:
            server.links[-1].black_hole()
            black_hole_at.append(anyio.current_time())

        async with live(URL, MemoryTransport(network), on_message=on_message) as conn:
            rec = Recorder(conn)
            await conn.wait_connected()
            await conn.send("mark")
            await conn.wait_for("RECONNECTING")
            failures = dict(conn.stats().failures)
    assert rec.at("CONNECTED", "RECONNECTING") - black_hole_at[0] == pytest.approx(
        CONFIG.heartbeat_timeout
    )
    assert failures == {"lost": 1}


async def test_02_reset_noticed_at_once(network: MemoryNetwork) -> None:
    """A reset is noticed the moment it happens (0 s), a heartbeat timeout of 20 s away."""
    config = CONFIG.replace(heartbeat_interval=10.0, heartbeat_timeout=20.0)
    async with (
        network.serve(URL, echo) as server,
        live(URL, MemoryTransport(network), config=config) as conn,
    ):
        rec = Recorder(conn)
        await conn.wait_connected()
        await anyio.sleep(1.0)
        reset_at = anyio.current_time()
        server.links[-1].reset()
        await conn.wait_for("RECONNECTING")
        failures = dict(conn.stats().failures)
    assert rec.at("CONNECTED", "RECONNECTING") == reset_at
    assert failures == {"lost": 1}


@pytest.mark.parametrize("margin", [-0.01, 0.01], ids=["just-above", "just-below"])
@pytest.mark.parametrize("interval", [0.3, 0.2])
async def test_05_false_timeout_exactly_when_rtt_reaches_timeout_minus_interval(
    network: MemoryNetwork, interval: float, margin: float
) -> None:
    """With heartbeat_timeout 0.6 s and a round trip 0.01 s below timeout - interval:
    0 ``lost`` over 10 timeouts, every heartbeat acked, RTT = 2 x latency; 0.01 s above
    it: lost at the first timeout (the first pong comes interval + RTT after opening)."""
    timeout = 0.6
    rtt = timeout - interval - margin
    config = CONFIG.replace(heartbeat_interval=interval, heartbeat_timeout=timeout)
    async with (
        network.serve(URL, echo),
        delayed(network, rtt / 2) as transport,
        live(URL, transport, config=config) as conn,
    ):
        rec = Recorder(conn)
        await conn.wait_connected()
        await anyio.sleep(10 * timeout)
        stats = conn.stats()
    if margin > 0:
        assert stats.failures == {}
        assert stats.state == "CONNECTED"
        assert stats.heartbeats_acked >= 10 * timeout / interval - 2
        assert stats.heartbeat_rtt == pytest.approx(rtt)
    else:
        opened = rec.at("CONNECTING", "CONNECTED")
        assert rec.at("CONNECTED", "RECONNECTING") - opened == pytest.approx(timeout)
        assert stats.failures["lost"] >= 1


@pytest.mark.parametrize("kind", ["websocket", "tcp"])
async def test_06_accept_and_close_gaps_are_the_backoff_ceilings(
    network: MemoryNetwork, kind: str
) -> None:
    """The gaps between attempts are exactly the backoff's ceilings with random() = 1.0:
    0.02, 0.04, 0.08, 0.16, 0.32 s."""
    # The backoff's own gaps: the endpoint rule (which would wait and probe after three
    # failures in a row) is held off, as in the real row.
    config = CONFIG.replace(
        backoff=ExponentialJitter(initial=0.02, maximum=5.0), endpoint_failures=100
    )
    ceilings = [0.02 * 2**n for n in range(5)]

    async def close_at_once(link: ServerLink) -> None:
        return None  # returning closes with 1000

    if kind == "tcp":
        network.hang_up(URL)
    async with (
        network.serve(URL, close_at_once),
        live(URL, MemoryTransport(network), config=config) as conn,
    ):
        rec = Recorder(conn)
        while len(rec.entries("CONNECTING")) < len(ceilings) + 1:
            await conn.wait_changed()
        stats = conn.stats()
    attempts = rec.entries("CONNECTING")
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == pytest.approx(ceilings)
    assert set(stats.failures) == {"planned" if kind == "websocket" else "network"}


@pytest.mark.parametrize("code", [1001, 1012])
async def test_07_planned_close_reconnects_after_the_jittered_delay(
    network: MemoryNetwork, code: int
) -> None:
    """With random() = 0.5 and planned_reconnect_delay 0.4 s, the next attempt comes
    exactly 0.2 s after the close; no failure counted."""
    config = CONFIG.replace(
        backoff=ExponentialJitter(initial=5.0, maximum=5.0), planned_reconnect_delay=0.4
    )
    async with (
        network.serve(URL, commands),
        live(URL, MemoryTransport(network), config=config, random=lambda: 0.5) as conn,
    ):
        rec = Recorder(conn)
        await conn.wait_connected()
        while conn.stats().heartbeats_acked < 1:  # noqa: ASYNC110 - no event for an ack
            await anyio.sleep(0.001)  # stable once acked
        await conn.send(f"close:{code}")
        await conn.wait_for("RECONNECTING")
        await conn.wait_connected()
        stats = conn.stats()
    delay = rec.at("RECONNECTING", "CONNECTING") - rec.at("CONNECTED", "RECONNECTING")
    assert delay == pytest.approx(0.5 * config.planned_reconnect_delay)
    assert stats.failures == {"planned": 1}
    assert stats.consecutive_failures == 0


class Credentials:
    """A credentials provider counting refreshes; ``on_refresh`` runs at each."""

    def __init__(self, on_refresh: Any = None) -> None:
        self.refreshes = 0
        self.on_refresh = on_refresh

    async def handshake_headers(self) -> Mapping[str, Secret]:
        return {"Authorization": Secret(f"Bearer token-{self.refreshes}")}

    async def refresh(self) -> bool:
        self.refreshes += 1
        if self.on_refresh is not None:
            self.on_refresh()
        return True

    async def escalate(self) -> bool:
        return False


@pytest.mark.parametrize("recovers", [False, True])
async def test_09_after_http_401_the_retry_comes_at_once(
    network: MemoryNetwork, recovers: bool
) -> None:
    """After HTTP 401 and the credentials' refresh, the retry comes at once (0 s: no
    backoff, though one of 5 s is configured); 2 attempts, 1 refresh."""
    config = CONFIG.replace(backoff=ExponentialJitter(initial=5.0, maximum=5.0))
    credentials = Credentials(on_refresh=(lambda: network.restore(URL)) if recovers else None)
    async with network.serve(URL, echo):
        network.reject(URL, 401)  # until the refresh restores the server, if it does
        async with live(
            URL, MemoryTransport(network), config=config, credentials=credentials
        ) as conn:
            rec = Recorder(conn)
            if recovers:
                await conn.wait_connected()
            else:
                with pytest.raises(ConnectionFailed):
                    await conn.wait_connected()
    failed_at = rec.at("CONNECTING", "RECONNECTING")
    assert rec.at("RECONNECTING", "CONNECTING") - failed_at == 0
    assert (network.attempts(URL), credentials.refreshes) == (2, 1)


async def test_10_retry_after_is_the_delay(network: MemoryNetwork) -> None:
    """After HTTP 503 with Retry-After: 1, the next attempt comes exactly 1.0 s later (it
    exceeds the backoff's ceiling, 0.02 s)."""
    network.reject(URL, 503, retry_after=1)
    async with network.serve(URL, echo), live(URL, MemoryTransport(network)) as conn:
        rec = Recorder(conn)
        await conn.wait_for("RECONNECTING")
        network.restore(URL)
        await conn.wait_connected()
    attempts = rec.entries("CONNECTING")
    assert attempts[1] - attempts[0] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["tcp-connect", "handshake"])
async def test_11_stalled_attempt_ends_at_open_timeout(network: MemoryNetwork, kind: str) -> None:
    """CONNECTING -> RECONNECTING exactly open_timeout (0.3 s) after entering CONNECTING;
    class network."""
    config = CONFIG.replace(open_timeout=0.3)
    if kind == "tcp-connect":
        network.stall(URL)
        transport: Any = MemoryTransport(network)
    else:
        transport = SilentTransport()
    async with live(URL, transport, config=config) as conn:
        rec = Recorder(conn)
        await conn.wait_for("RECONNECTING")
        stats = conn.stats()
    took = rec.at("CONNECTING", "RECONNECTING") - conn.started_at
    assert took == pytest.approx(config.open_timeout)
    assert stats.failures == {"network": 1}


async def test_12_a_close_never_answered_ends_at_close_timeout(network: MemoryNetwork) -> None:
    """Leaving ``async with`` takes exactly close_timeout (0.2 s) when the peer never
    answers the close frame; CLOSED, 0 tasks alive."""
    async with network.serve(URL, echo) as server:
        async with live(URL, MemoryTransport(network)) as conn:
            await conn.wait_connected()
            server.links[-1].black_hole()
            leaving = anyio.current_time()
        took = anyio.current_time() - leaving
        assert conn.state == "CLOSED"
        assert conn.stats().tasks_alive == 0
    assert took == pytest.approx(CONFIG.close_timeout)


async def test_18_leaving_takes_close_timeout_when_the_server_never_reads(
    network: MemoryNetwork,
) -> None:
    """With 20 MB unsent to a server that stopped reading, leaving ``async with`` takes
    exactly close_timeout (0.5 s): the link is aborted at the deadline."""
    config = CONFIG.replace(close_timeout=0.5, heartbeat_interval=5.0, heartbeat_timeout=10.0)

    async def never_read(link: ServerLink) -> None:
        link.pause_reading()
        await anyio.sleep_forever()

    async with network.serve(URL, never_read):
        conn = live(URL, MemoryTransport(network), config=config)
        async with conn:
            await conn.wait_connected()
            with anyio.move_on_after(0.5):  # send() waits once the buffers are full
                for _ in range(40):
                    await conn.send(b"z" * 500_000)
            leaving = anyio.current_time()
        took = anyio.current_time() - leaving
    assert conn.state == "CLOSED"
    assert took == pytest.approx(config.close_timeout)
