"""A live connection in virtual time: in-memory transport, trio's MockClock.

Hours of heartbeats, backoff and outages run in milliseconds, with exact
assertions on counts and times.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

import fsm_live
from fsm_live import (
    Config,
    ConnectionFailed,
    FixedDelay,
    Secret,
    TransitionRefused,
    connect,
)
from fsm_live._runtime.trace import TRACE_KEYS, read_trace
from fsm_live.connection import LiveConnection
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.pacing import ReconnectPacer
from fsm_live.diagnostics.verify import verify_file
from fsm_live.errors import BufferFull, ConnectionClosed
from fsm_live.protocols import JsonProtocol
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink, echo

pytestmark = pytest.mark.anyio
URL = "ws://server.test/feed"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork()


class Credentials:
    """A provider that counts what the connection asks of it."""

    def __init__(
        self,
        *,
        escalate_ok: bool = False,
        on_refresh: Callable[[], None] | None = None,
        escalate_when: anyio.Event | None = None,
    ) -> None:
        self.refreshes = 0
        self.escalations = 0
        self.token_refreshes = 0
        self.escalate_ok = escalate_ok
        self.on_refresh = on_refresh
        self.escalate_when = escalate_when

    async def handshake_headers(self) -> Mapping[str, Secret]:
        return {"Cookie": Secret("unb=1")}

    async def refresh(self) -> bool:
        self.refreshes += 1
        if self.on_refresh is not None:
            self.on_refresh()
        return True

    async def escalate(self) -> bool:
        self.escalations += 1
        if self.escalate_when is not None:
            await self.escalate_when.wait()
        return self.escalate_ok

    async def refresh_token(self) -> bool:
        self.token_refreshes += 1
        return True


def client_tasks() -> int:
    """Tasks running now, the in-memory server's own excluded."""
    return sum("transport.memory" not in task.name for task in anyio.get_running_tasks())


def live(network: MemoryNetwork, **options: Any) -> LiveConnection:
    options.setdefault("random", lambda: 1.0)
    return connect(URL, transport=MemoryTransport(network), **options)


def edges(conn: LiveConnection) -> dict[tuple[str, str, str], int]:
    return dict(conn.stats().transitions)


async def test_lifecycle_of_a_clean_session(network: MemoryNetwork, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    async with network.serve(URL, echo):
        before = client_tasks()
        with anyio.fail_after(60):
            async with live(network, protocol="json", trace=trace) as conn:
                await conn.wait_connected()
                # On trio (and over any byte stream): the timer, and the link's job
                # (its reader and writer).  Heartbeats, refreshes, cleanup and the
                # flush are the engine's deadlines and calls: no task.
                assert conn.stats().tasks_alive == 2
                await conn.send({"id": "1", "text": "hello"})
                assert conn.stats().tasks_alive == 2
                assert await anext(aiter(conn)) == {"id": "1", "text": "hello"}
            assert conn.state == "CLOSED"
            assert conn.stats().tasks_alive == 0
        assert client_tasks() == before
    lines = read_trace(trace)
    assert [(line["from"], line["to"]) for line in lines] == [
        ("DISCONNECTED", "CONNECTING"),
        ("CONNECTING", "CONNECTED"),
        ("CONNECTED", "CLOSED"),
    ]
    assert all(tuple(line) == TRACE_KEYS for line in lines)
    assert lines[0]["t"] == 0.0
    assert verify_file(conn.spec, trace).ok  # fsm-live verify: it conforms to the spec


async def test_24_hours_of_heartbeats(network: MemoryNetwork) -> None:
    async with network.serve(URL, echo), live(network) as conn:
        await conn.wait_connected()
        start = anyio.current_time()
        await anyio.sleep(24 * 3600 + 1)
        stats = conn.stats()
        assert stats.heartbeats_sent == 24 * 3600 // 15
        assert stats.heartbeats_acked == stats.heartbeats_sent
        assert stats.state == "CONNECTED"
        assert stats.time_in_state == anyio.current_time() - start
        assert edges(conn) == {
            ("DISCONNECTED", "start", "CONNECTING"): 1,
            ("CONNECTING", "opened", "CONNECTED"): 1,
        }


async def test_half_open_link_found_at_heartbeat_timeout(network: MemoryNetwork) -> None:
    async with network.serve(URL, echo) as server, live(network) as conn:
        await conn.wait_connected()
        await anyio.sleep(100)  # heartbeats at 15, 30, ... 90 acked at once
        server.links[-1].black_hole()
        await conn.wait_for("RECONNECTING")
        # The last inbound frame was the pong of the heartbeat at t=90.
        assert anyio.current_time() - conn.stats().time_in_state == pytest.approx(
            conn._lifecycle.entered_at
        )
        assert conn._lifecycle.entered_at - (conn._started_at + 90) == pytest.approx(30)
        assert conn.stats().failures == {"lost": 1}
        await conn.wait_connected()


async def test_24_hours_with_token_refreshes_and_an_outage(network: MemoryNetwork) -> None:
    credentials = Credentials()
    config = Config(backoff=FixedDelay(60), max_failures=20)
    async with (
        network.serve(URL, echo) as server,
        live(network, credentials=credentials, config=config) as conn,
    ):
        await conn.wait_connected()
        await anyio.sleep(3600)
        # Outage: the server goes away for 630 s.  The link is lost, two attempts 60 s
        # apart are refused: three failures in a row, the endpoint is down.  From then
        # on the connection waits, probing at most every probe_interval (jittered).
        network.refuse(URL)
        server.links[-1].drop()
        await anyio.sleep(630)
        assert conn.state in ("WAITING", "CONNECTING")
        network.forget(URL)
        async with network.serve(URL, echo):
            back = anyio.current_time()
            await conn.wait_connected()
            assert anyio.current_time() - back <= 1.5 * config.probe_interval
            await anyio.sleep(23 * 3600 - 630)
            assert conn.state == "CONNECTED"
            await conn.close()
    # The token refresh 72000 s after the first connect rotated once.
    assert credentials.token_refreshes == 1
    taken = edges(conn)
    probes = taken[("WAITING", "probe", "CONNECTING")]
    # 510 s of waiting: gaps of 0.5, 1, 2, 2... s jittered by half: 200 to 1000 probes.
    assert 510 / 3 <= probes <= 510 / 0.5
    assert taken == {
        ("DISCONNECTED", "start", "CONNECTING"): 1,
        ("CONNECTING", "opened", "CONNECTED"): 3,
        ("CONNECTED", "lost", "RECONNECTING"): 1,
        ("RECONNECTING", "retry", "CONNECTING"): 2,
        ("CONNECTING", "connect_failed", "RECONNECTING"): 1,
        ("CONNECTING", "wait", "WAITING"): probes,
        ("WAITING", "probe", "CONNECTING"): probes,
        ("CONNECTED", "rotate", "CONNECTING"): 1,
        ("CONNECTED", "close", "CLOSED"): 1,
    }
    # The outage counts as the failures before the endpoint was down, not one per probe.
    assert conn.stats().failures == {"lost": 1, "network": 1}


async def test_a_lone_connection_says_how_long_its_endpoint_was_known_down(
    network: MemoryNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    """The INFO line of the return: how long the endpoint was known down (from the
    failure that made it down, endpoint_failures in a row), not "after N s" read as
    the outage; and no "0 waiting connections reconnect" when none other waits."""
    caplog.set_level(logging.INFO, logger="fsm_live")
    config = Config(backoff=FixedDelay(5))
    network.refuse(URL)
    async with live(network, config=config) as conn:
        await conn.wait_for("WAITING")  # three refusals 5 s apart: down at 10 s
        down_at = anyio.current_time()
        await anyio.sleep(30)
        network.forget(URL)
        async with network.serve(URL, echo):
            await conn.wait_connected()
            known_down = anyio.current_time() - down_at
    [back] = [r for r in caplog.records if "is back" in r.getMessage()]
    assert back.levelname == "INFO"
    assert back.getMessage() == (
        f"{URL}: endpoint server.test:80 is back (known down for {known_down:.1f} s)"
    )


async def test_handshake_403_without_credentials_fails_after_one_attempt(
    network: MemoryNetwork,
) -> None:
    network.reject(URL, 403)
    async with live(network) as conn:
        with pytest.raises(ConnectionFailed) as caught:
            await conn.wait_connected()
        assert caught.value.failure.http_status == 403
        assert caught.value.failure.error_class == "auth"
        await anyio.sleep(3600)
        assert conn.state == "FAILED"
        with pytest.raises(ConnectionFailed):
            await conn.send("x")
    assert network.attempts(URL) == 1


async def test_401_refreshes_once_and_retries_once(network: MemoryNetwork) -> None:
    network.reject(URL, 401)
    credentials = Credentials()
    async with live(network, credentials=credentials) as conn:
        with pytest.raises(ConnectionFailed):
            await conn.wait_connected()
        await anyio.sleep(3600)
    assert (network.attempts(URL), credentials.refreshes) == (2, 1)


async def test_401_recovered_by_refresh(network: MemoryNetwork) -> None:
    async with network.serve(URL, echo):
        network.reject(URL, 401)  # overrides the server until restored
        credentials = Credentials(on_refresh=lambda: network.restore(URL))
        async with live(network, credentials=credentials) as conn:
            await conn.wait_connected()
            assert edges(conn)[("CONNECTING", "connect_failed", "RECONNECTING")] == 1
    assert (network.attempts(URL), credentials.refreshes) == (2, 1)


class FlakyCredentials(Credentials):
    """Headers fail the first time, with a message that must not reach stats or traces."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def handshake_headers(self) -> Mapping[str, Secret]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("token endpoint said: MARKER-5731")
        return await super().handshake_headers()


async def test_a_failing_credentials_provider_fails_the_attempt_not_the_task(
    network: MemoryNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with network.serve(URL, echo):
        credentials = FlakyCredentials()
        async with live(network, credentials=credentials) as conn:
            await conn.wait_connected()
            stats = conn.stats()
    assert edges(conn)[("CONNECTING", "connect_failed", "RECONNECTING")] == 1
    assert stats.failures == {"server": 1}
    assert stats.last_error == "server: credentials provider raised RuntimeError"
    assert credentials.calls == 2
    assert "crashed" not in caplog.text
    assert "credentials provider raised RuntimeError" in caplog.text  # with its traceback
    assert "MARKER" not in repr(stats)


async def test_connections_sharing_a_pacer_reconnect_in_turn(network: MemoryNetwork) -> None:
    pacer = ReconnectPacer(2)  # at most one attempt per 0.5 s
    retries: list[float] = []
    async with network.serve(URL, echo) as server, AsyncExitStack() as stack:
        conns = [
            await stack.enter_async_context(
                live(network, config=Config(backoff=FixedDelay(1.0)), pacer=pacer)
            )
            for _ in range(4)
        ]
        for conn in conns:
            await conn.wait_connected()
            conn.on_transition(lambda r: retries.append(r.at) if r.trigger == "retry" else None)
        dropped_at = anyio.current_time()
        for link in list(server.links):
            link.drop()
        for conn in conns:
            while conn.stats().reconnects < 1 or conn.state != "CONNECTED":
                await conn.wait_changed()
    assert [t - dropped_at for t in retries] == [1.0, 1.5, 2.0, 2.5]


async def test_retry_after_is_waited(network: MemoryNetwork) -> None:
    network.reject(URL, 503, retry_after=120)
    async with live(network) as conn:
        await conn.wait_for("RECONNECTING")
        failed_at = anyio.current_time()
        network.forget(URL)
        async with network.serve(URL, echo):
            await conn.wait_connected()
            assert anyio.current_time() - failed_at >= 120


async def test_accept_then_close_server_sees_growing_gaps(network: MemoryNetwork) -> None:
    opened: list[float] = []

    async def accept_and_close(link: ServerLink) -> None:
        opened.append(anyio.current_time())
        await link.close(1000)

    async with (
        network.serve(URL, accept_and_close),
        live(network, config=Config(max_failures=8, failed_retry=False)) as conn,
    ):
        with pytest.raises(ConnectionFailed):
            await conn.wait_for("CLOSED")
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(opened)]
    assert gaps == [1, 2, 4, 8, 16, 32, 60]  # random=1.0: the ceiling; never a spin


async def test_max_failures_then_escalation_recovers(network: MemoryNetwork) -> None:
    relogged = anyio.Event()
    credentials = Credentials(escalate_ok=True, escalate_when=relogged)
    network.refuse(URL)
    # Refused more times than max_failures, but not enough to call the endpoint down
    # (which would make it wait instead: an outage is not this connection's failure).
    config = Config(backoff=FixedDelay(1), max_failures=3, endpoint_failures=10)
    async with live(network, credentials=credentials, config=config) as conn:
        await conn.wait_for("FAILED")
        network.forget(URL)
        async with network.serve(URL, echo):
            relogged.set()
            # The escalation succeeds: reset, retry.
            await conn.wait_for("RECONNECTING", raise_on_failed=False)
            await conn.wait_connected()
    assert credentials.escalations == 1
    assert edges(conn)[("RECONNECTING", "give_up", "FAILED")] == 1
    assert edges(conn)[("FAILED", "reset", "RECONNECTING")] == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [(1008, "FAILED"), (4500, "FAILED"), (1012, "RECONNECTING"), (1001, "RECONNECTING")],
)
async def test_server_close_codes(network: MemoryNetwork, code: int, expected: str) -> None:
    async def close_later(link: ServerLink) -> None:
        await anyio.sleep(20)  # past the stability window
        await link.close(code)

    async with network.serve(URL, close_later), live(network, random=lambda: 0.5) as conn:
        await conn.wait_connected()
        closed_at = anyio.current_time() + 20
        await conn.wait_for(expected)
        if expected == "RECONNECTING":
            await conn.wait_for("CONNECTING")
            # Planned and stable: a short jittered delay (0.5 * planned_reconnect_delay).
            assert anyio.current_time() - closed_at == pytest.approx(0.5)
            assert conn.stats().consecutive_failures == 0
        else:
            await anyio.sleep(3600)
            assert network.attempts(URL) == 1


@pytest.mark.parametrize("state", ["CONNECTING", "CONNECTED", "RECONNECTING", "FAILED"])
async def test_close_from_any_state_joins_everything(network: MemoryNetwork, state: str) -> None:
    if state == "CONNECTING":
        network.stall(URL)
    elif state == "RECONNECTING":
        network.refuse(URL)
    elif state == "FAILED":
        network.reject(URL, 404)
    async with network.serve(URL, echo) if state == "CONNECTED" else _nothing():
        before = client_tasks()
        async with live(network) as conn:
            await conn.wait_for(state)
            started = anyio.current_time()
            await conn.close()
            assert conn.state == "CLOSED"
            assert anyio.current_time() - started <= conn.config.close_timeout
            assert conn.stats().tasks_alive == 0
            with pytest.raises(ConnectionClosed):
                await conn.send("late")
        assert client_tasks() == before


async def test_sends_before_connected_flush_in_order(network: MemoryNetwork) -> None:
    received: list[Any] = []
    done = anyio.Event()

    async def collect(link: ServerLink) -> None:
        while len(received) < 5:
            received.append(await link.receive())
        done.set()
        await anyio.sleep_forever()

    network.stall(URL)
    async with live(network, config=Config(outbound_buffer=5)) as conn:
        for i in range(5):
            await conn.send(f"m{i}")
        with pytest.raises(BufferFull):
            await conn.send("m5")
        await conn.wait_for("CONNECTING")
        network.forget(URL)
        async with network.serve(URL, collect):
            await done.wait()
    assert received == [f"m{i}" for i in range(5)]


async def test_sends_while_connected_are_written_at_once_and_kept_nowhere(
    network: MemoryNetwork,
) -> None:
    """Thirty sends against a bound of ten: each frame is written as it is sent, so
    none waits in the delivery ledger (nothing to flush later, no BufferFull)."""
    received: list[Any] = []

    async def collect(link: ServerLink) -> None:
        while len(received) < 30:
            received.append(await link.receive())
        await anyio.sleep_forever()

    async with (
        network.serve(URL, collect),
        live(network, config=Config(outbound_buffer=10)) as conn,
    ):
        await conn.wait_connected()
        for burst in range(3):
            for i in range(10):
                await conn.send(f"{burst}-{i}")
            while conn.stats().buffered:  # the byte stream's writer catches up
                await conn.wait_changed()
        assert conn.stats().messages_out == 30
        assert conn.stats().resent == 0
    assert received == [f"{burst}-{i}" for burst in range(3) for i in range(10)]


async def test_duplicates_dropped_and_handler_called(network: MemoryNetwork) -> None:
    got: list[Any] = []

    async def handler(message: Any) -> None:
        got.append(message)

    async def pushes(link: ServerLink) -> None:
        for item in ('{"id": 1}', '{"id": 1}', '{"id": 2}'):
            await link.send(item)
        await anyio.sleep_forever()

    async with (
        network.serve(URL, pushes),
        live(network, protocol=JsonProtocol(dedup_key="id"), on_message=handler) as conn,
    ):
        await conn.wait_connected()
        await anyio.sleep(1)
        assert conn.stats().duplicates_dropped == 1
        with pytest.raises(RuntimeError, match="not iterable"):
            aiter(conn)
    assert got == [{"id": 1}, {"id": 2}]


async def test_json_delivers_every_message_unless_dedup_is_asked_for(
    network: MemoryNetwork,
) -> None:
    frames = ('{"id": 1}', '{"id": "1"}', '{"id": 1}', '{"id": 1.5}', "[1]", '{"x": 1}')

    async def pushes(link: ServerLink) -> None:
        for frame in frames:
            await link.send(frame)
        await anyio.sleep_forever()

    async def receive_all(protocol: JsonProtocol, count: int) -> list[Any]:
        received: list[Any] = []
        async with network.serve(URL, pushes), live(network, protocol=protocol) as conn:
            async for message in conn:
                received.append(message)
                if len(received) == count:
                    break
            await anyio.sleep(1)
            assert conn.stats().messages_in == count
        return received

    # A JSON-RPC client whose ids restart after a reconnect must get every response.
    assert await receive_all(JsonProtocol(), 6) == [
        {"id": 1},
        {"id": "1"},
        {"id": 1},
        {"id": 1.5},
        [1],
        {"x": 1},
    ]
    # Opted in, ids compare as JSON values: 1 and "1" are two ids.
    assert await receive_all(JsonProtocol(dedup_key="id"), 5) == [
        {"id": 1},
        {"id": "1"},
        {"id": 1.5},
        [1],
        {"x": 1},
    ]


async def test_rotate_reconnects_without_failure(network: MemoryNetwork) -> None:
    async with network.serve(URL, echo), live(network) as conn:
        await conn.wait_connected()
        record = await conn.rotate("new token")
        assert (record.source, record.trigger, record.reason) == (
            "CONNECTED",
            "rotate",
            "new token",
        )
        await conn.wait_connected()
        assert conn.stats().failures == {}
        assert network.attempts(URL) == 2


async def test_concurrent_rotates_each_learn_what_happened(network: MemoryNetwork) -> None:
    records: list[Any] = []
    refused: list[TransitionRefused] = []

    async def rotate(conn: LiveConnection) -> None:
        try:
            records.append(await conn.rotate())
        except TransitionRefused as error:
            refused.append(error)

    async with network.serve(URL, echo), live(network) as conn:
        await conn.wait_connected()
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(rotate, conn)
        # One rotation, taken at once; the others find the connection CONNECTING.
        assert [(r.source, r.trigger) for r in records] == [("CONNECTED", "rotate")]
        assert len(refused) == 19
        assert all(error.state == "CONNECTING" for error in refused)
        await conn.wait_connected()
    assert edges(conn)[("CONNECTED", "rotate", "CONNECTING")] == 1


async def test_state_names_are_checked(network: MemoryNetwork) -> None:
    async with network.serve(URL, echo), live(network) as conn:
        with pytest.raises(ValueError, match="unknown state"):
            await conn.wait_for("ONLINE")


# -- outages of any length never strand a connection ----------------------------------------


async def test_an_outage_longer_than_the_backoff_ends_connected(network: MemoryNetwork) -> None:
    # Defaults: after endpoint_failures (3) refusals in a row the endpoint is down; the
    # connection waits (not FAILED: nothing is wrong with it) and probes at most every
    # probe_interval (1 s, jittered by half).
    config = Config()
    network.refuse(URL)
    async with live(network) as conn:
        await anyio.sleep(20 * 60)  # twenty minutes down
        assert conn.state in ("WAITING", "CONNECTING")
        assert not conn.needs_reset
        dials = network.attempts(URL)
        back = anyio.current_time()
        network.forget(URL)
        async with network.serve(URL, echo):
            await conn.wait_connected()
            took = anyio.current_time() - back
    # Back within one probe gap of the server's return.
    assert took <= 1.5 * config.probe_interval
    # Never more than one dial per 0.5 * probe_interval while down, and never a spin.
    assert (
        20 * 60 / (1.5 * config.probe_interval) <= dials <= 20 * 60 / (0.5 * config.probe_interval)
    )
    stats = conn.stats()
    assert "FAILED" not in {state for edge in stats.transitions for state in (edge[0], edge[2])}
    assert stats.failures["network"] == config.endpoint_failures - 1


async def test_a_server_that_accepts_and_closes_for_a_while_is_retried_until_it_works(
    network: MemoryNetwork,
) -> None:
    opened: list[float] = []

    async def accept_and_close(link: ServerLink) -> None:
        opened.append(anyio.current_time())
        await link.close(1000)

    async with live(network) as conn:
        async with network.serve(URL, accept_and_close):
            await conn.wait_for("FAILED", raise_on_failed=False)
            await anyio.sleep(10)
        async with network.serve(URL, echo):
            await conn.wait_connected()
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert min(gaps) > 0.5  # never a spin
    assert ("FAILED", "recover", "RECONNECTING") in conn.stats().transitions


async def test_sessions_recycled_with_1001_that_stream_messages_never_fail(
    network: MemoryNetwork,
) -> None:
    async def recycle(link: ServerLink) -> None:
        for i in range(8):  # a message every 50 ms, then close 1001 at 0.4 s
            await link.send(f"m{i}")
            await anyio.sleep(0.05)
        await link.close(1001)

    config = Config(heartbeat_interval=0.6, heartbeat_timeout=1.8, stability_window=1.0)
    received = 0

    async def count(message: Any) -> None:
        nonlocal received
        received += 1

    async with (
        network.serve(URL, recycle),
        live(network, config=config, on_message=count, random=lambda: 0.5) as conn,
    ):
        await anyio.sleep(60)
        stats = conn.stats()
    assert "FAILED" not in {dest for (_, _, dest) in stats.transitions}
    assert stats.failures == {"planned": stats.transitions[("CONNECTED", "lost", "RECONNECTING")]}
    assert stats.consecutive_failures == 0
    assert received >= 8 * 60 // 1  # every session delivered its messages


async def test_a_terminal_failure_needs_reset_and_reset_recovers(network: MemoryNetwork) -> None:
    async def close_4500(link: ServerLink) -> None:
        await link.close(4500)

    async with live(network) as conn:
        async with network.serve(URL, close_4500):
            with pytest.raises(ConnectionFailed) as caught:
                await conn.wait_for("CLOSED")  # raises once FAILED for good
        assert caught.value.failure.close_code == 4500
        assert conn.needs_reset
        await anyio.sleep(3600)
        assert conn.state == "FAILED"  # nothing retries a terminal failure
        with pytest.raises(ConnectionFailed):
            await conn.send("x")
        async with network.serve(URL, echo):
            record = await conn.reset()
            assert (record.source, record.trigger) == ("FAILED", "reset")
            await conn.wait_connected()
            assert conn.failure is None
            with pytest.raises(
                TransitionRefused, match="'reset' is not allowed in state CONNECTED"
            ):
                await conn.reset()


async def test_sends_in_a_failed_state_that_retries_arrive_once_in_order(
    network: MemoryNetwork,
) -> None:
    """Issue 20 (docs/embedding.md, ``send``): FAILED after retryable failures retries
    by itself after ``failed_retry_delay``, and ``send()`` meanwhile keeps the
    messages; once the server is back they reach it once each, in order with the
    ones sent later, across a ``recover`` that failed again."""
    received: list[Any] = []

    async def collect(link: ServerLink) -> None:
        while True:
            received.append(await link.receive())

    # 429 (throttled): retryable, and not the endpoint's (no WAITING), so the
    # connection goes FAILED after max_failures and comes out by itself.
    network.reject(URL, 429)
    config = Config(max_failures=2, failed_retry_delay=5)
    async with live(network, config=config) as conn:
        await conn.wait_for("FAILED")
        assert not conn.needs_reset
        await conn.send("m0")  # accepted: no error, returns at once
        await conn.send("m1")
        assert conn.stats().buffered == 2
        await conn.wait_for("RECONNECTING")  # recover: retried by itself ...
        await conn.wait_for("FAILED")  # ... and refused again
        await conn.send("m2")
        assert conn.stats().buffered == 3
        network.restore(URL)
        async with network.serve(URL, collect):
            await conn.wait_connected()
            await conn.send("m3")
            await anyio.sleep(600)  # virtual: heartbeats, nothing sent twice
            stats = conn.stats()
    assert received == ["m0", "m1", "m2", "m3"]
    assert stats.messages_out == 4
    assert stats.resent == 0
    assert stats.buffered == 0
    assert stats.transitions[("FAILED", "recover", "RECONNECTING")] == 2
    assert stats.failures == {"throttled": 4}


async def test_why_it_failed_is_kept_after_close(network: MemoryNetwork) -> None:
    network.reject(URL, 404)
    async with live(network) as conn:
        await conn.wait_for("FAILED")
    assert conn.state == "CLOSED"
    assert conn.failure is not None
    assert conn.failure.failure.http_status == 404


# -- errors in the application's code end the connection cleanly -----------------------------


async def test_a_raising_on_transition_callback_closes_the_connection(
    network: MemoryNetwork,
) -> None:
    def boom(record: TransitionRecord) -> None:
        if record.dest == "CONNECTED":
            raise RuntimeError("callback bug")

    async def use(conn: LiveConnection) -> None:
        async with conn:
            with pytest.raises(ConnectionClosed) as caught:
                await conn.wait_for("FAILED")
            assert isinstance(caught.value.__cause__, RuntimeError)
            assert conn.state == "CLOSED"
            with pytest.raises(ConnectionClosed):
                await conn.send("x")

    async with network.serve(URL, echo):
        conn = live(network)
        conn.on_transition(boom)
        with pytest.raises(RuntimeError, match="callback bug"):
            await use(conn)
    assert conn.state == "CLOSED"
    assert conn.stats().tasks_alive == 0
    assert edges(conn)[("CONNECTED", "close", "CLOSED")] == 1


async def test_a_connection_cancelled_from_outside_still_ends_closed(
    network: MemoryNetwork, tmp_path: Path
) -> None:
    trace = tmp_path / "t.jsonl"
    async with network.serve(URL, echo):
        with anyio.CancelScope() as scope:
            async with live(network, trace=trace) as conn:
                await conn.wait_connected()
                scope.cancel()  # what a signal handler's cancellation does
                await anyio.sleep_forever()
    assert conn.state == "CLOSED"
    assert read_trace(trace)[-1]["to"] == "CLOSED"
    assert conn.stats().tasks_alive == 0


async def test_a_failure_of_the_connection_itself_closes_it_and_never_spins(
    network: MemoryNetwork, tmp_path: Path
) -> None:
    async with network.serve(URL, echo):
        conn = live(network, trace=tmp_path / "t.jsonl")

        def disk_full(record: TransitionRecord) -> None:
            raise OSError(28, "No space left on device")

        async def use() -> None:
            async with conn:
                assert conn._trace is not None
                conn._trace.write = disk_full  # type: ignore[method-assign]
                with pytest.raises(ConnectionClosed):
                    await conn.wait_connected()
                with pytest.raises(ConnectionClosed):
                    await conn.wait_changed()

        with pytest.raises(OSError, match="No space left"):
            await use()
    assert conn.state == "CLOSED"


class _nothing:  # reads as a null context in the test above
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_connections_without_a_machine_share_one() -> None:
    """Rule 5 on the public path: every ``connect()`` without ``machine=`` is a model of
    the same Machine (a slip that built one per connection cost 18x a bare websockets
    client's memory, unseen by any test)."""
    first = fsm_live.connect("ws://127.0.0.1:9/")
    second = fsm_live.connect("ws://127.0.0.1:9/", protocol="json")
    assert first.machine is second.machine
    assert first.config is second.config  # the default Config is shared too
