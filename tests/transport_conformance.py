"""The transport conformance suite, at the connection level: what a live connection
does over every transport and backend.

Not collected by itself.  A test module subclasses :class:`TransportConformance` in
a class named ``Test...``, with a ``harness`` fixture (a :class:`Harness`) and its
``anyio_backend``; every scenario here then runs through ``fsm_live.connect(...)``
over that transport.  ``tests/test_transport.py`` runs it four ways: the default
TCP transport on asyncio (its ``asyncio.Protocol`` path) and on trio (its stream
path), a transport with only ``open_stream`` on asyncio (the stream path there),
and the in-memory network in virtual time.

A harness stands up servers its transport can reach and hands each accepted
connection to a backend-neutral :class:`Side`.  Handlers only act and record;
the assertions are facts made in the test body: the state sequence (from the
connection's transition records), the failure's class and kind, the close codes
the server saw, message contents, counts, and time bounds (with the harness's
``margin`` for real sockets on a busy machine).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio
import pytest

from fsm_live import Config, ExponentialJitter
from fsm_live.connection import LiveConnection
from fsm_live.core.classify import Failure
from fsm_live.core.effects import TransitionRecord
from fsm_live.transport.base import Message

#: Each scenario's own bound (pytest-timeout's 60 s is the backstop).
TEST_DEADLINE = 20.0

#: Compressed timings: a scenario takes a second or two of real time.  Many
#: failures before FAILED, so retryable outages never end there during a test.
CONFIG = Config(
    heartbeat_interval=0.3,
    heartbeat_timeout=1.0,
    open_timeout=3.0,
    close_timeout=0.5,
    stability_window=0.3,
    planned_reconnect_delay=0.05,
    backoff=ExponentialJitter(initial=0.05, maximum=0.2),
    max_failures=50,
)


class Side(Protocol):
    """The server's end of one accepted WebSocket connection, whatever the transport."""

    @property
    def request_headers(self) -> Mapping[str, str]: ...

    async def send(self, message: Message, *, text: bool | None = None) -> None:
        """Send a message; ``text=True`` sends bytes in a text frame as they are."""
        ...

    async def send_fragments(
        self, fragments: Sequence[Message], *, text: bool | None = None
    ) -> None:
        """Send one message in fragments, a frame each."""
        ...

    async def recv(self) -> Message: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    async def drop(self) -> None:
        """End the connection without a close frame."""
        ...

    async def ping(self, data: bytes = b"") -> None:
        """Send a ping; return once its pong arrived."""
        ...

    async def wait_closed(self) -> int | None:
        """Wait until the connection is closed; the close code the server saw."""
        ...


Handler = Callable[[Side], Awaitable[None]]
#: The answer to the n-th handshake (1-based): None accepts it, else ``(status,
#: headers)`` rejects it with that HTTP status.
Answer = Callable[[int], "tuple[int, Mapping[str, str]] | None"]


class Served(Protocol):
    """A server a harness stands up."""

    @property
    def url(self) -> str: ...

    def attempts(self) -> int:
        """Connection attempts the server saw, whatever came of them."""
        ...

    def black_hole(self) -> None:
        """From now on, every open connection answers nothing and reads nothing that
        arrives (a half-open link).  Only if served with ``black_holes=True``."""
        ...

    def stop_reading(self) -> None:
        """From now on, nothing the client sends reaches the server (its close frame
        included); the server still sends.  Only if served with ``black_holes=True``."""
        ...


class Harness(Protocol):
    """Servers for one transport, and connections over it."""

    #: Slack on time bounds: scheduling on a busy machine (0 in virtual time).
    margin: float
    #: How long "nothing more happens" is watched for.
    watch: float
    #: The connection's tasks while connected: the link's job (its reader and writer)
    #: and, on trio, the timer's; none at all on asyncio's protocol path.
    tasks_when_connected: int

    def connect(self, url: str, **options: Any) -> LiveConnection:
        """``fsm_live.connect(url)`` over this transport, with :data:`CONFIG`."""
        ...

    def serving(
        self, handler: Handler, *, answer: Answer | None = None, black_holes: bool = False
    ) -> AbstractAsyncContextManager[Served]:
        """A WebSocket server running ``handler`` per connection (its end, or an
        exception because the connection closed, is fine).  ``answer`` decides each
        handshake; ``black_holes`` makes :meth:`Served.black_hole` available."""
        ...

    def refusing(self) -> AbstractAsyncContextManager[str]:
        """A URL where connecting is refused."""
        ...

    def hanging_up(self) -> AbstractAsyncContextManager[Served]:
        """A server that accepts the connection and closes it without answering the
        handshake (the client sees the end of the stream)."""
        ...

    def stalling(self) -> AbstractAsyncContextManager[Served]:
        """A server that accepts the connection and never answers the handshake."""
        ...


class Recorder:
    """Every transition of a connection, with the failure behind it and the number of
    messages received by then; waits for states."""

    def __init__(self, conn: LiveConnection) -> None:
        self._conn = conn
        self.records: list[TransitionRecord] = []
        #: The failure behind each record (None for a transition without one).
        self.failures: list[Failure | None] = []
        #: ``stats().messages_in`` when each record was taken.
        self.messages_in: list[int] = []
        self._changed = anyio.Event()
        conn.on_transition(self._note)

    def _note(self, record: TransitionRecord) -> None:
        lifecycle = self._conn._lifecycle
        self.records.append(record)
        self.failures.append(lifecycle.last_failure if record.error_class else None)
        self.messages_in.append(self._conn.stats().messages_in)
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def states(self) -> list[str]:
        """The states entered, in order (DISCONNECTED, the initial one, excluded)."""
        return [record.dest for record in self.records]

    def entries(self, state: str) -> list[int]:
        """Indexes of the records that entered ``state``."""
        return [i for i, record in enumerate(self.records) if record.dest == state]

    async def reach(self, state: str, count: int = 1) -> int:
        """Wait for the ``count``-th entry into ``state``; return its record's index."""
        while len(self.entries(state)) < count:
            await self._changed.wait()
        return self.entries(state)[count - 1]

    def failure(self, index: int) -> Failure:
        failure = self.failures[index]
        assert failure is not None, self.records[index]
        return failure


def first_then(first: Handler, then: Handler | None = None) -> Handler:
    """A handler running ``first`` on the first connection, ``then`` (echo) after."""
    count = 0

    async def handler(side: Side) -> None:
        nonlocal count
        count += 1
        await (first if count == 1 else then or echo)(side)

    return handler


async def echo(side: Side) -> None:
    """Send every message back."""
    while True:
        await side.send(await side.recv())


@contextlib.asynccontextmanager
async def messages(conn: LiveConnection) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """The connection's next message, as a function to await."""
    iterator = aiter(conn)

    async def take() -> Any:
        return await anext(iterator)

    yield take


class TransportConformance:
    """The suite; see the module docstring."""

    pytestmark = pytest.mark.anyio

    # -- traffic -------------------------------------------------------------------------

    async def test_text_and_binary_echo(self, harness: Harness) -> None:
        sent: list[Message] = ["hello", b"\x00\x01\xff", "", b"", "é" * 100, b"x" * 4000]
        closed: list[int | None] = []
        done = anyio.Event()

        async def record(side: Side) -> None:
            try:
                await echo(side)
            finally:
                closed.append(await side.wait_closed())
                done.set()

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(record) as served:
                async with harness.connect(served.url) as conn, messages(conn) as take:
                    recorder = Recorder(conn)
                    await conn.wait_connected()
                    for message in sent:
                        await conn.send(message)
                    received = [await take() for _ in sent]
                    assert conn.stats().tasks_alive == harness.tasks_when_connected
                await done.wait()
        assert received == sent
        assert [type(m) for m in received] == [type(m) for m in sent]
        assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]
        assert closed == [1000]  # the client closed cleanly
        assert served.attempts() == 1
        stats = conn.stats()
        assert (stats.messages_out, stats.messages_in) == (len(sent), len(sent))

    async def test_large_messages_both_ways(self, harness: Harness) -> None:
        """~1 MB each way, below max_size (1 MiB)."""
        binary = bytes(range(256)) * 3900  # 998,400 bytes
        text = "ü" * 450_000  # 900,000 bytes of UTF-8
        assert len(binary) < CONFIG.max_size
        assert len(text.encode()) < CONFIG.max_size
        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(echo) as served,
                harness.connect(served.url) as conn,
                messages(conn) as take,
            ):
                recorder = Recorder(conn)
                await conn.wait_connected()
                await conn.send(binary)
                await conn.send(text)
                got_binary = await take()
                got_text = await take()
        assert got_binary == binary
        assert got_text == text
        assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]

    async def test_fragmented_messages_from_the_server(self, harness: Harness) -> None:
        async def fragments(side: Side) -> None:
            await side.send_fragments(["frag", "men", "ted"])
            await side.send_fragments([b"\x00", b"\x01\x02", b"", b"\x03"])
            await side.send_fragments([b"\xc3", b"\xa9"], text=True)  # é split in two
            await side.send("whole")
            await side.wait_closed()

        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(fragments) as served,
                harness.connect(served.url) as conn,
                messages(conn) as take,
            ):
                recorder = Recorder(conn)
                received = [await take() for _ in range(4)]
        assert received == ["fragmented", b"\x00\x01\x02\x03", "é", "whole"]
        assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]

    async def test_server_pings_are_answered(self, harness: Harness) -> None:
        pongs: list[bytes] = []

        async def pinging(side: Side) -> None:
            for data in (b"one", b"two", b""):
                await side.ping(data)
                pongs.append(data)
            await side.send("pinged")
            await side.wait_closed()

        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(pinging) as served,
                harness.connect(served.url) as conn,
                messages(conn) as take,
            ):
                recorder = Recorder(conn)
                assert await take() == "pinged"
        assert pongs == [b"one", b"two", b""]
        assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]

    async def test_messages_before_a_server_close_all_arrive_in_order(
        self, harness: Harness
    ) -> None:
        """Every message the server sent before its close frame is in the inbox when
        the close is acted on (fewer than the inbox holds: reading never pauses)."""
        count = 50
        assert count < CONFIG.message_concurrency

        async def burst_and_close(side: Side) -> None:
            for i in range(count):
                await side.send(f"m{i}")
            await side.close(1000, "done")

        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(first_then(burst_and_close)) as served,
                harness.connect(served.url) as conn,
                messages(conn) as take,
            ):
                recorder = Recorder(conn)
                lost = await recorder.reach("RECONNECTING")
                received = [await take() for _ in range(count)]
        assert received == [f"m{i}" for i in range(count)]
        assert recorder.messages_in[lost] == count
        assert recorder.failure(lost).close_code == 1000

    async def test_messages_sent_before_a_close_all_arrive_in_order(self, harness: Harness) -> None:
        """Sent before connected (buffered) and while connected, then the client
        closes: the server gets every one, in order, then the close (1000)."""
        count = 50
        got: list[Message] = []
        closed: list[int | None] = []
        done = anyio.Event()

        async def collect(side: Side) -> None:
            try:
                while True:
                    got.append(await side.recv())
            finally:
                closed.append(await side.wait_closed())
                done.set()

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(collect) as served:
                async with harness.connect(served.url) as conn:
                    recorder = Recorder(conn)
                    for i in range(count // 2):  # not yet connected: buffered
                        await conn.send(f"early {i}")
                    await conn.wait_connected()
                    for i in range(count // 2):
                        await conn.send(f"late {i}")
                await done.wait()
        assert got == [f"early {i}" for i in range(count // 2)] + [
            f"late {i}" for i in range(count // 2)
        ]
        assert closed == [1000]
        assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]

    # -- the peer breaking the protocol ---------------------------------------------------

    async def test_invalid_utf8_in_a_text_frame_fails_the_link_with_1007(
        self, harness: Harness
    ) -> None:
        closed: list[int | None] = []

        async def invalid(side: Side) -> None:
            await side.send(b"ok? \xff\xfe", text=True)
            closed.append(await side.wait_closed())

        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(first_then(invalid)) as served,
                harness.connect(served.url) as conn,
            ):
                recorder = Recorder(conn)
                await recorder.reach("CONNECTED", 2)
        assert recorder.states[:5] == [
            "CONNECTING",
            "CONNECTED",
            "RECONNECTING",
            "CONNECTING",
            "CONNECTED",
        ]
        failure = recorder.failure(2)
        assert (failure.error_class, failure.close_code) == ("protocol", 1007)
        assert closed == [1007]  # the server was told why
        assert recorder.messages_in[2] == 0  # the invalid message was not delivered

    async def test_a_message_over_max_size_is_1009_and_terminal(self, harness: Harness) -> None:
        closed: list[int | None] = []

        async def flood(side: Side) -> None:
            await side.send("small")
            await side.send(b"x" * 2048)
            closed.append(await side.wait_closed())

        config = CONFIG.replace(max_size=1024)
        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(flood) as served,
                harness.connect(served.url, config=config) as conn,
                messages(conn) as take,
            ):
                recorder = Recorder(conn)
                assert await take() == "small"
                failed = await recorder.reach("FAILED")
                assert conn.needs_reset
                await anyio.sleep(harness.watch)  # terminal: no retry
                attempts = served.attempts()
        assert recorder.states == ["CONNECTING", "CONNECTED", "FAILED", "CLOSED"]
        failure = recorder.failure(failed)
        assert (failure.error_class, failure.close_code) == ("terminal", 1009)
        assert closed == [1009]
        assert attempts == 1

    async def test_a_message_over_max_size_fails_at_once_though_the_server_talks_on(
        self, harness: Harness
    ) -> None:
        """The client fails the link (1009) and reads nothing more; a server that never
        reads its close and keeps sending does not keep it CONNECTED: FAILED at once,
        terminal, and the link is closed within close_timeout."""
        holder: list[Served] = []

        async def flood_and_talk_on(side: Side) -> None:
            holder[0].stop_reading()
            await side.send("small")
            await side.send(b"x" * 2048)
            while True:
                await side.send("still here")
                await anyio.sleep(CONFIG.heartbeat_interval / 3)

        config = CONFIG.replace(max_size=1024)
        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(flood_and_talk_on, black_holes=True) as served,
                harness.connect(served.url, config=config) as conn,
            ):
                holder.append(served)
                recorder = Recorder(conn)
                connected = await recorder.reach("CONNECTED")
                with anyio.fail_after(CONFIG.heartbeat_timeout * 3):
                    failed = await recorder.reach("FAILED")
                with anyio.fail_after(CONFIG.close_timeout + harness.margin):
                    while not conn._engine.idle:  # the link closed (aborted at the deadline)
                        await conn.wait_changed()
        assert recorder.states == ["CONNECTING", "CONNECTED", "FAILED", "CLOSED"]
        failure = recorder.failure(failed)
        assert (failure.error_class, failure.close_code) == ("terminal", 1009)
        took = recorder.records[failed].at - recorder.records[connected].at
        assert took <= harness.margin
        self.figure("over max_size to FAILED (server talking on)", took)

    # -- the server closing ---------------------------------------------------------------

    @pytest.mark.parametrize(
        ("code", "error_class"),
        [
            (1000, "planned"),
            (1001, "planned"),
            (1012, "planned"),
            (4000, "retry"),
        ],
    )
    async def test_a_server_close_that_reconnects(
        self, harness: Harness, code: int, error_class: str
    ) -> None:
        closed: list[int | None] = []

        async def close(side: Side) -> None:
            await side.close(code, "bye")
            closed.append(await side.wait_closed())

        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(first_then(close)) as served,
                harness.connect(served.url) as conn,
            ):
                recorder = Recorder(conn)
                await recorder.reach("CONNECTED", 2)
        assert recorder.states[:5] == [
            "CONNECTING",
            "CONNECTED",
            "RECONNECTING",
            "CONNECTING",
            "CONNECTED",
        ]
        failure = recorder.failure(2)
        assert (failure.error_class, failure.close_code, failure.kind) == (error_class, code, None)
        assert str(code) in recorder.records[2].reason
        assert closed == [code]  # the client answered the close with the same code
        assert served.attempts() == 2

    @pytest.mark.parametrize("code", [1008, 4500])
    async def test_a_terminal_server_close_fails(self, harness: Harness, code: int) -> None:
        closed: list[int | None] = []

        async def close(side: Side) -> None:
            await side.close(code, "go away")
            closed.append(await side.wait_closed())

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(close) as served, harness.connect(served.url) as conn:
                recorder = Recorder(conn)
                failed = await recorder.reach("FAILED")
                assert conn.needs_reset
                assert conn.failure is not None
                await anyio.sleep(harness.watch)
                attempts = served.attempts()
        assert recorder.states == ["CONNECTING", "CONNECTED", "FAILED", "CLOSED"]
        failure = recorder.failure(failed)
        assert (failure.error_class, failure.close_code) == ("terminal", code)
        assert conn.failure is not None
        assert conn.failure.failure == failure  # kept after close
        assert closed == [code]
        assert attempts == 1

    async def test_the_server_dropping_an_open_link_is_1006_lost(self, harness: Harness) -> None:
        async def drop(side: Side) -> None:
            await side.drop()

        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(first_then(drop)) as served,
                harness.connect(served.url) as conn,
            ):
                recorder = Recorder(conn)
                await recorder.reach("CONNECTED", 2)
        assert recorder.states[:5] == [
            "CONNECTING",
            "CONNECTED",
            "RECONNECTING",
            "CONNECTING",
            "CONNECTED",
        ]
        failure = recorder.failure(2)
        assert (failure.error_class, failure.close_code) == ("lost", 1006)

    # -- the handshake failing ------------------------------------------------------------

    async def test_http_503_with_retry_after_is_honoured(self, harness: Harness) -> None:
        retry_after = 1.0

        def busy_once(attempt: int) -> tuple[int, Mapping[str, str]] | None:
            return (503, {"Retry-After": "1"}) if attempt == 1 else None

        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(echo, answer=busy_once) as served,
                harness.connect(served.url) as conn,
            ):
                recorder = Recorder(conn)
                connected = await recorder.reach("CONNECTED")
        assert recorder.states[:4] == ["CONNECTING", "RECONNECTING", "CONNECTING", "CONNECTED"]
        failure = recorder.failure(1)
        assert (failure.error_class, failure.http_status, failure.retry_after) == (
            "server",
            503,
            retry_after,
        )
        waited = recorder.records[2].at - recorder.records[1].at
        assert retry_after <= waited <= retry_after + CONFIG.backoff.maximum + harness.margin
        self.figure("Retry-After: 1 waited", waited)
        assert served.attempts() == 2
        assert connected == 3

    @pytest.mark.parametrize("status", [401, 403])
    async def test_http_401_and_403_are_auth(self, harness: Harness, status: int) -> None:
        """Without credentials to refresh, an auth failure is FAILED at once."""
        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(echo, answer=lambda _: (status, {})) as served,
                harness.connect(served.url) as conn,
            ):
                recorder = Recorder(conn)
                failed = await recorder.reach("FAILED")
                assert conn.needs_reset
                await anyio.sleep(harness.watch)
                attempts = served.attempts()
        assert recorder.states == ["CONNECTING", "FAILED", "CLOSED"]
        failure = recorder.failure(failed)
        assert (failure.error_class, failure.http_status) == ("auth", status)
        assert failure.reason == f"HTTP {status} at handshake"
        assert attempts == 1

    async def test_connection_refused(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.refusing() as url, harness.connect(url) as conn:
                recorder = Recorder(conn)
                await recorder.reach("CONNECTING", 3)  # retried, again and again
        assert recorder.states[:5] == [
            "CONNECTING",
            "RECONNECTING",
            "CONNECTING",
            "RECONNECTING",
            "CONNECTING",
        ]
        for index in (1, 3):
            failure = recorder.failure(index)
            assert (failure.error_class, failure.kind) == ("network", "refused")
            assert failure.reason == "connection refused"

    async def test_eof_during_the_handshake(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.hanging_up() as served, harness.connect(served.url) as conn:
                recorder = Recorder(conn)
                await recorder.reach("CONNECTING", 3)
        for index in (1, 3):
            failure = recorder.failure(index)
            assert (failure.error_class, failure.kind) == ("network", "eof")
        assert served.attempts() >= 2

    async def test_a_stalled_handshake_times_out_at_open_timeout(self, harness: Harness) -> None:
        open_timeout = 0.5
        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.stalling() as served,
                harness.connect(
                    served.url, config=CONFIG.replace(open_timeout=open_timeout)
                ) as conn,
            ):
                recorder = Recorder(conn)
                await recorder.reach("CONNECTING", 2)
        failure = recorder.failure(1)
        assert (failure.error_class, failure.kind) == ("network", "timeout")
        took = recorder.records[1].at - recorder.records[0].at
        assert open_timeout <= took <= open_timeout + harness.margin
        self.figure("stalled handshake failed after", took)
        assert served.attempts() >= 1

    # -- a silent peer ---------------------------------------------------------------------

    async def test_a_half_open_link_is_lost_within_heartbeat_timeout(
        self, harness: Harness
    ) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(echo, black_holes=True) as served,
                harness.connect(served.url) as conn,
            ):
                recorder = Recorder(conn)
                await conn.wait_connected()
                while conn.stats().heartbeats_acked < 2:
                    await conn.wait_changed()
                silent_from = anyio.current_time()
                served.black_hole()
                lost = await recorder.reach("RECONNECTING")
        found_after = recorder.records[lost].at - silent_from
        # The last pong came at most one interval before the silence began.
        timeout, interval = CONFIG.heartbeat_timeout, CONFIG.heartbeat_interval
        assert timeout - interval - harness.margin <= found_after <= timeout + harness.margin
        failure = recorder.failure(lost)
        assert (failure.error_class, failure.kind) == ("lost", "heartbeat_timeout")
        self.figure("half-open found after", found_after)

    async def test_close_against_a_silent_server_takes_close_timeout(
        self, harness: Harness
    ) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with (
                harness.serving(echo, black_holes=True) as served,
                harness.connect(served.url) as conn,
            ):
                recorder = Recorder(conn)
                await conn.wait_connected()
                served.black_hole()
                start = anyio.current_time()
                await conn.close()
                took = anyio.current_time() - start
                assert conn.state == "CLOSED"
        assert CONFIG.close_timeout <= took <= CONFIG.close_timeout + harness.margin
        assert recorder.states == ["CONNECTING", "CONNECTED", "CLOSED"]
        assert conn.stats().tasks_alive == 0
        self.figure("close against a silent server took", took)

    # -- reporting -------------------------------------------------------------------------

    def figure(self, name: str, value: float) -> None:
        """Print a measured figure (``pytest -s`` shows them)."""
        print(f"\n{type(self).__name__}: {name} {value:.3f} s")
