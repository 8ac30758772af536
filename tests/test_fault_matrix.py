"""The fault matrix: a live connection against a REAL local websockets server,
mostly through the fault-injection proxy, with compressed timings.

Each test asserts a figure (a time or a count against a bound); its docstring
names the figure.  docs/fault-matrix.md lists the rows with the figures measured.
Times are ``anyio.current_time()`` (the event loop's monotonic clock), the clock
transition records are stamped with.

Every row runs on both backends (asyncio and trio).  Where a fact has
no event to wait for (a heartbeat ack, "nothing more happens"), the test watches
for a stated window; nothing else waits on real time.
"""

from __future__ import annotations

import contextlib
import gc
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import pytest
import trustme
from servers import (
    RawServer,
    ServerSide,
    WebSocketServer,
    close_at_once,
    raw_server,
    say_nothing,
    stalled_listener,
    websocket_server,
)

from fsm_live import Config, ConnectionFailed, ExponentialJitter, FixedDelay, Secret, connect
from fsm_live.connection import LiveConnection
from fsm_live.core.backoff import MIN_RETRY_DELAY
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.lifecycle import LifecycleMachine
from fsm_live.fault_proxy import Direction, FaultProxy, Faults
from fsm_live.spec import Spec, default_spec_path

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

#: Compressed timings: every row ends well within 2 s of real time.
CONFIG = Config(
    heartbeat_interval=0.1,
    heartbeat_timeout=0.3,
    # Long enough for a TLS handshake on a busy machine; row 11 shortens it.
    open_timeout=2.0,
    close_timeout=0.2,
    stability_window=0.2,
    planned_reconnect_delay=0.2,
    backoff=ExponentialJitter(initial=0.02, maximum=0.1),
    max_failures=50,
)
#: Each test's own deadline (pytest-timeout's is the module's 30 s).
DEADLINE = 10.0
#: Slack for "at once" and for the scheduling between a deadline and its effect.
MARGIN = 0.1
#: How long "no further attempts" is watched: 15 times the first backoff ceiling.
WATCH = 0.3

BOTH_BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


Figure = Callable[[str, object], None]


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """Record a measured figure as a user property of the test's report (a
    ``--junitxml`` report keeps them); docs/fault-matrix.md gives the worst of 3 runs."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))

    return record


# -- helpers ---------------------------------------------------------------------------


class Recorder:
    """Every transition of a connection, as it happened."""

    def __init__(self, conn: LiveConnection) -> None:
        self.records: list[TransitionRecord] = []
        conn.on_transition(self.records.append)

    def at(self, source: str, dest: str) -> float:
        """When the first ``source -> dest`` transition happened."""
        return next(r.at for r in self.records if (r.source, r.dest) == (source, dest))


def live(url: str, **options: Any) -> LiveConnection:
    options.setdefault("config", CONFIG)
    options.setdefault("random", lambda: 1.0)
    return connect(url, **options)


@contextlib.asynccontextmanager
async def proxied(server: WebSocketServer | RawServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream=("127.0.0.1", server.port), seed=1) as proxy:
        yield proxy


def proxy_url(proxy: FaultProxy, scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{proxy.port}/"


async def until(conn: LiveConnection, predicate: Callable[[], bool]) -> None:
    """Wait (on the connection's transitions) until ``predicate()`` holds."""
    while not predicate():
        await conn.wait_changed()


async def poll(predicate: Callable[[], bool]) -> None:
    """Wait for a fact no event announces (a heartbeat ack): check every 5 ms."""
    while not predicate():  # noqa: ASYNC110 - the connection has no event for it
        await anyio.sleep(0.005)


async def until_settled_in_failed(conn: LiveConnection) -> ConnectionFailed:
    """Wait for FAILED for good (its escalation, if any, over); return the failure."""
    await conn.wait_for("FAILED")
    await until(conn, lambda: conn.needs_reset)
    failure = conn.failure
    assert failure is not None
    return failure


async def commands(side: ServerSide) -> None:
    """Echo, except ``close:CODE`` (close with CODE) and ``big:N`` (send N bytes)."""
    while True:
        message = await side.recv()
        if isinstance(message, str) and message.startswith("close:"):
            await side.close(int(message.removeprefix("close:")))
            return
        if isinstance(message, str) and message.startswith("big:"):
            await side.send(b"x" * int(message.removeprefix("big:")))
            continue
        await side.send(message)


class Credentials:
    """A credentials provider counting refreshes; its token changes on refresh."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.escalations = 0

    async def handshake_headers(self) -> Mapping[str, Secret]:
        return {"Authorization": Secret(f"Bearer token-{self.refreshes}")}

    async def refresh(self) -> bool:
        self.refreshes += 1
        return True

    async def escalate(self) -> bool:
        self.escalations += 1
        return False


# -- 1. half-open link -----------------------------------------------------------------


@BOTH_BACKENDS
async def test_01_half_open_found_within_heartbeat_timeout(figure: Figure) -> None:
    """Figure: time from the black hole (the last inbound frame is no later) to
    CONNECTED -> RECONNECTING (lost) <= heartbeat_timeout + 0.1 s; and >=
    heartbeat_timeout after sending the message whose echo was the last frame
    known to have arrived (no early verdict)."""
    black_hole_at: list[float] = []

    with anyio.fail_after(DEADLINE):
        async with websocket_server() as server, proxied(server) as proxy:

            async def on_message(message: Any) -> None:
                # The echo of "mark" arrived: from now on, nothing gets through.
                proxy.set_faults(Faults(black_hole=True))
                black_hole_at.append(anyio.current_time())

            async with live(proxy_url(proxy), on_message=on_message) as conn:
                rec = Recorder(conn)
                await conn.wait_connected()
                mark_sent_at = anyio.current_time()
                await conn.send("mark")
                await conn.wait_for("RECONNECTING")
                proxy.clear_faults()
                lost_at = rec.at("CONNECTED", "RECONNECTING")
                failures = dict(conn.stats().failures)
                await conn.wait_connected()  # and it recovers

    detected_after = lost_at - black_hole_at[0]
    figure("lost_after_black_hole_s", detected_after)
    figure("lost_after_mark_sent_s", lost_at - mark_sent_at)
    assert failures == {"lost": 1}
    assert lost_at - mark_sent_at >= CONFIG.heartbeat_timeout
    assert detected_after <= CONFIG.heartbeat_timeout + MARGIN


# -- 2. RST ----------------------------------------------------------------------------


@BOTH_BACKENDS
async def test_02_reset_noticed_at_once(figure: Figure) -> None:
    """Figure: time from the proxy's RST to CONNECTED -> RECONNECTING (about 1 ms),
    with a heartbeat timeout of 20 s, so no heartbeat can be what noticed it; the
    bound, 0.5 s, leaves room for a busy machine and is still 40x below it."""
    config = CONFIG.replace(heartbeat_interval=10.0, heartbeat_timeout=20.0)
    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server() as server,
            proxied(server) as proxy,
            live(proxy_url(proxy), config=config) as conn,
        ):
            rec = Recorder(conn)
            await conn.wait_connected()
            reset_at = anyio.current_time()
            await proxy.reset_links()
            await conn.wait_for("RECONNECTING")
            failures = dict(conn.stats().failures)
            await conn.wait_connected()
    noticed_after = rec.at("CONNECTED", "RECONNECTING") - reset_at
    figure("reset_noticed_after_s", noticed_after)
    assert failures == {"lost": 1}
    assert noticed_after <= 0.5


# -- 3. a message cut mid-frame --------------------------------------------------------


async def test_03_message_cut_mid_frame_is_never_delivered(figure: Figure) -> None:
    """Figure: of a 100,000-byte message cut after 1,000 bytes, 0 bytes reach the
    application; the link is lost and the next link delivers the message whole."""
    size, limit = 100_000, 1_000
    received: list[Any] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        received.append(message)
        arrived.set()

    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server(commands) as server,
            proxied(server) as proxy,
            live(proxy_url(proxy), on_message=on_message) as conn,
        ):
            await conn.wait_connected()
            proxy.set_faults(Faults(limit_data=limit), Direction.DOWNSTREAM)
            before = proxy.stats.bytes_downstream
            await conn.send(f"big:{size}")
            await conn.wait_for("RECONNECTING")
            cut_link_bytes = proxy.stats.bytes_downstream - before
            proxy.clear_faults()
            await conn.wait_connected()
            from_cut_link = list(received)
            await conn.send(f"big:{size}")
            await arrived.wait()
            failures = dict(conn.stats().failures)
    figure("cut_link_bytes", cut_link_bytes)
    figure("messages_delivered_from_cut_link", len(from_cut_link))
    assert from_cut_link == []
    assert cut_link_bytes == limit
    assert failures == {"lost": 1}
    assert received == [b"x" * size]


# -- 4. sliced frames ------------------------------------------------------------------


async def test_04_sliced_frames_arrive_intact(figure: Figure) -> None:
    """Figure: 7/7 messages (1 B to 20 kB, 26,161 B in all) echoed intact through
    7-byte slices both ways (about 7,500 writes), with no reconnect."""
    sizes = [1, 6, 7, 8, 139, 6_000, 20_000]
    # A pong queues behind a message being sliced: on a loaded machine the 20 kB
    # echo can take longer than 0.3 s, so the heartbeat timeout is not what is tested.
    config = CONFIG.replace(heartbeat_interval=2.0, heartbeat_timeout=5.0)
    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server() as server,
            proxied(server) as proxy,
            live(proxy_url(proxy), config=config) as conn,
        ):
            await conn.wait_connected()
            proxy.set_faults(Faults(slice_size=7))
            messages = aiter(conn)
            for number, size in enumerate(sizes):
                text = (str(number) * size)[:size]
                await conn.send(text)
                assert await anext(messages) == text
            stats = conn.stats()
    figure("intact_messages", stats.messages_in)
    assert stats.messages_in == len(sizes)
    assert stats.connects == 1
    assert stats.failures == {}


# -- 5. no false timeout ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "latency"),
    [
        pytest.param(0.3, 0.1, id="rtt0.2-interval0.3-timeout0.6"),
        pytest.param(0.2, 0.15, id="rtt0.3-interval0.2-timeout0.6"),
    ],
)
async def test_05_no_false_timeout_while_rtt_below_timeout_minus_interval(
    figure: Figure, interval: float, latency: float
) -> None:
    """Figure: 0 ``lost`` over 3 heartbeat timeouts with the proxy adding ``latency``
    each way, RTT = 2 * latency < heartbeat_timeout - heartbeat_interval (by 0.1 s, room
    for a busy machine's scheduling); heartbeats acked, and the measured RTT is >= 2 *
    latency."""
    config = CONFIG.replace(heartbeat_interval=interval, heartbeat_timeout=0.6)
    assert 2 * latency < config.heartbeat_timeout - config.heartbeat_interval
    with anyio.fail_after(DEADLINE):
        async with websocket_server() as server, proxied(server) as proxy:
            proxy.set_faults(Faults(latency=latency))
            async with live(proxy_url(proxy), config=config) as conn:
                await conn.wait_connected()
                await anyio.sleep(3 * config.heartbeat_timeout)  # the window watched
                stats = conn.stats()
    figure("lost", stats.failures.get("lost", 0))
    figure("heartbeat_rtt_s", stats.heartbeat_rtt)
    figure("heartbeats_acked", stats.heartbeats_acked)
    assert stats.failures == {}
    assert stats.state == "CONNECTED"
    assert stats.heartbeats_acked >= 1
    assert stats.heartbeat_rtt is not None
    assert stats.heartbeat_rtt >= 2 * latency


# -- 6. accept-and-close: growing gaps, no spin ----------------------------------------


async def _websocket_closes_at_once(side: ServerSide) -> None:
    return None  # the handshake is done; returning closes with 1000


@contextlib.asynccontextmanager
async def _accepts_and_closes(kind: str) -> AsyncIterator[WebSocketServer | RawServer]:
    if kind == "websocket":
        async with websocket_server(_websocket_closes_at_once) as server:
            yield server
    else:
        async with raw_server(close_at_once) as raw:
            yield raw


@pytest.mark.parametrize("kind", ["websocket", "tcp"])
async def test_06_accept_and_close_sees_growing_gaps(figure: Figure, kind: str) -> None:
    """Figure: 6 attempts in the first ~0.62 s (websockets' own loop: ~1,500/s);
    each gap between attempts is >= its backoff ceiling (0.02, 0.04, 0.08, 0.16,
    0.32 s with random() = 1.0: doubling, so the gaps grow), at most + 0.1 s (the
    time an attempt takes, on a busy machine)."""
    config = CONFIG.replace(backoff=ExponentialJitter(initial=0.02, maximum=5.0))
    ceilings = [0.02 * 2**n for n in range(5)]
    with anyio.fail_after(DEADLINE):
        async with _accepts_and_closes(kind) as server, live(server.url, config=config) as conn:
            await server.attempts.wait_for(len(ceilings) + 1)
            stats = conn.stats()
    gaps = server.attempts.gaps[: len(ceilings)]
    figure("gaps_s", [round(gap, 4) for gap in gaps])
    figure("gap_excess_max_s", max(g - c for g, c in zip(gaps, ceilings, strict=True)))
    figure("first_six_attempts_within_s", server.attempts.times[5] - server.attempts.times[0])
    assert all(
        ceiling <= gap <= ceiling + 0.1 for gap, ceiling in zip(gaps, ceilings, strict=True)
    ), gaps
    assert gaps[-1] > 2 * gaps[0], gaps  # growing: never a spin
    expected_class = "planned" if kind == "websocket" else "network"
    assert set(stats.failures) == {expected_class}
    assert stats.consecutive_failures >= len(ceilings)


# -- 7. planned closes -----------------------------------------------------------------


@pytest.mark.parametrize("code", [1001, 1012])
async def test_07_planned_close_reconnects_after_a_jittered_delay(
    figure: Figure, code: int
) -> None:
    """Figure: with random() = 0.5 and planned_reconnect_delay 0.4 s, the delay from the
    server's close (once stable) to the next attempt is 0.5 * 0.4 = 0.2 s (at most
    + 0.1 s on a busy machine: still below the unjittered 0.4 s); no failure is counted."""
    config = CONFIG.replace(
        backoff=ExponentialJitter(initial=5.0, maximum=5.0), planned_reconnect_delay=0.4
    )
    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server(commands) as server,
            live(server.url, config=config, random=lambda: 0.5) as conn,
        ):
            rec = Recorder(conn)
            await conn.wait_connected()
            await poll(lambda: conn.stats().heartbeats_acked >= 1)  # stable now
            await conn.send(f"close:{code}")
            await server.attempts.wait_for(2)
            await conn.wait_connected()
            stats = conn.stats()
    delay = rec.at("RECONNECTING", "CONNECTING") - rec.at("CONNECTED", "RECONNECTING")
    figure("planned_delay_s", delay)
    jittered = 0.5 * config.planned_reconnect_delay
    assert jittered <= delay <= jittered + 0.1
    assert stats.failures == {"planned": 1}
    assert stats.consecutive_failures == 0


# -- 8. terminal errors ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def _terminal_server(case: str) -> AsyncIterator[WebSocketServer]:
    if case == "http403":
        async with websocket_server(reject=lambda n, headers: (403, {})) as server:
            yield server
    else:
        code = int(case.removeprefix("close"))

        async def handler(side: ServerSide) -> None:
            await side.close(code)

        async with websocket_server(handler) as server:
            yield server


@BOTH_BACKENDS
@pytest.mark.parametrize(
    ("case", "error_class"),
    [
        ("close1008", "terminal"),
        ("close4500", "terminal"),
        ("http403", "auth"),
    ],
)
async def test_08_terminal_errors_end_failed_without_further_attempts(
    figure: Figure, case: str, error_class: str
) -> None:
    """Figure: exactly 1 attempt at the server, 0 more in the 0.3 s after FAILED
    (15 first-backoff ceilings); the failure is of the expected class."""
    with anyio.fail_after(DEADLINE):
        async with _terminal_server(case) as server, live(server.url) as conn:
            failure = (await until_settled_in_failed(conn)).failure
            await anyio.sleep(WATCH)  # the window watched for further attempts
            state = conn.state
    figure("attempts", server.attempts.count)
    assert state == "FAILED"
    assert failure.error_class == error_class
    assert server.attempts.count == 1


# -- 9. HTTP 401: one refresh, one retry -----------------------------------------------


@pytest.mark.parametrize("recovers", [False, True])
async def test_09_http_401_refreshes_credentials_once_and_retries_once(
    figure: Figure, recovers: bool
) -> None:
    """Figure: 1 credential refresh and 2 attempts (the retry within 0.05 s, with
    the refreshed token); a server that keeps answering 401 leaves it FAILED (after
    one escalation, which does not recover it)."""
    credentials = Credentials()

    def reject(number: int, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str]] | None:
        fresh = headers.get("authorization") == "Bearer token-1"
        return None if recovers and fresh else (401, {})

    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server(reject=reject) as server,
            live(server.url, credentials=credentials) as conn,
        ):
            if recovers:
                await conn.wait_connected()
            else:
                failure = (await until_settled_in_failed(conn)).failure
                assert failure.http_status == 401
                await anyio.sleep(WATCH)  # the window watched for further attempts
            state = conn.state
    figure("refreshes", credentials.refreshes)
    figure("attempts", server.attempts.count)
    figure("retry_gap_s", server.attempts.gaps[0])
    assert state == ("CONNECTED" if recovers else "FAILED")
    assert credentials.refreshes == 1
    assert credentials.escalations == (0 if recovers else 1)  # FAILED's hook, once
    assert server.attempts.count == 2
    assert server.attempts.gaps[0] <= 0.05
    assert [h["authorization"] for h in server.request_headers] == [
        "Bearer token-0",
        "Bearer token-1",
    ]


# -- 10. Retry-After -------------------------------------------------------------------


def _machine_without_throttled_floor() -> LifecycleMachine:
    """The packaged spec, but without its 30 s floor for ``throttled`` (HTTP 429), so
    that the Retry-After alone sets the wait."""
    text = default_spec_path().read_text(encoding="utf-8")
    floor = "throttled: {action: retry, retry_after: true, min_delay: 30}"
    assert floor in text
    spec = Spec.from_yaml(text.replace(floor, "throttled: {action: retry, retry_after: true}"))
    return LifecycleMachine(spec)


@pytest.mark.parametrize(
    ("status", "spec"),
    [
        (503, "packaged"),
        (429, "packaged"),
        (429, "no-throttled-floor"),
    ],
)
async def test_10_retry_after_is_waited_out(figure: Figure, status: int, spec: str) -> None:
    """Figure: after HTTP 503/429 with Retry-After: 1, the next attempt comes >= 1.0 s
    later (<= 1.0 + backoff cap + 0.1 s); with the packaged spec, 429's 30 s floor:
    no attempt within Retry-After + 0.2 s."""
    machine = _machine_without_throttled_floor() if spec != "packaged" else None

    def reject(number: int, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str]] | None:
        return (status, {"Retry-After": "1"}) if number == 1 else None

    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server(reject=reject) as server,
            live(server.url, machine=machine) as conn,
        ):
            if status == 429 and spec == "packaged":
                await conn.wait_for("RECONNECTING")
                await anyio.sleep(1.2)  # the window watched: Retry-After + 0.2 s
                figure("attempts_within_1.2s", server.attempts.count - 1)
                assert server.attempts.count == 1
                assert conn.state == "RECONNECTING"
                return
            await conn.wait_connected()
    gap = server.attempts.gaps[0]
    figure("gap_s", gap)
    assert 1.0 <= gap <= 1.0 + 0.1 + MARGIN


# -- 11. stalled connect and stalled handshake -----------------------------------------


@contextlib.asynccontextmanager
async def _stalled(kind: str) -> AsyncIterator[str]:
    if kind == "tcp-connect":
        with stalled_listener() as port:
            yield f"ws://127.0.0.1:{port}/"
    else:
        async with raw_server(say_nothing) as server:
            yield server.url


@pytest.mark.parametrize("kind", ["tcp-connect", "handshake"])
async def test_11_stalled_attempt_ends_at_open_timeout(figure: Figure, kind: str) -> None:
    """Figure: CONNECTING -> RECONNECTING comes open_timeout (0.3 s) after
    entering CONNECTING, at most + 0.1 s; class network."""
    config = CONFIG.replace(open_timeout=0.3)
    with anyio.fail_after(DEADLINE):
        async with _stalled(kind) as url, live(url, config=config) as conn:
            rec = Recorder(conn)
            await conn.wait_for("RECONNECTING")
            stats = conn.stats()
    took = rec.at("CONNECTING", "RECONNECTING") - conn.started_at
    figure("connecting_s", took)
    assert config.open_timeout <= took <= config.open_timeout + MARGIN
    assert stats.failures == {"network": 1}


# -- 12. slow close --------------------------------------------------------------------


@BOTH_BACKENDS
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Faults(black_hole=True), id="close-frame-never-answered"),
        pytest.param(Faults(slow_close=5.0), id="fin-held-back-5s"),
    ],
)
async def test_12_slow_close_ends_by_close_timeout(figure: Figure, fault: Faults) -> None:
    """Figure: leaving ``async with`` takes <= close_timeout (0.2 s) + 0.15 s when
    the peer never answers the close frame or its FIN is held back 5 s (and >=
    close_timeout: the fault did hold the close up)."""
    with anyio.fail_after(DEADLINE):
        async with websocket_server() as server, proxied(server) as proxy:
            async with live(proxy_url(proxy)) as conn:
                await conn.wait_connected()
                proxy.set_faults(fault, Direction.DOWNSTREAM)
                leaving = anyio.current_time()
            took = anyio.current_time() - leaving
            assert conn.state == "CLOSED"
            assert conn.stats().tasks_alive == 0
    figure("close_s", took)
    assert CONFIG.close_timeout <= took <= CONFIG.close_timeout + 0.15


# -- 13. a flood at a slow handler -----------------------------------------------------


async def test_13_flood_at_a_slow_handler_keeps_memory_bounded(figure: Figure) -> None:
    """Figure: a server flooding 2,000 x 32 KiB (64 MiB) at a handler that never
    finishes: 4 handler calls at once (message_concurrency), at most as many
    messages more waiting (plus one read's worth), the server blocked after
    sending a bounded number of messages, and the Python heap's peak growth
    (tracemalloc, client and server) under 4 MiB."""
    count, size, concurrency = 2_000, 32 * 1024, 4
    payload = b"f" * size
    release = anyio.Event()
    in_handler = 0
    handlers_full = anyio.Event()
    blocked = anyio.Event()
    sent = 0

    async def on_message(message: Any) -> None:
        nonlocal in_handler
        in_handler += 1
        if in_handler == concurrency:
            handlers_full.set()
        await release.wait()

    async def flood(side: ServerSide) -> None:
        nonlocal sent
        await side.recv()
        for _ in range(count):
            # A send that does not finish in 0.25 s is blocked by backpressure.
            with anyio.move_on_after(0.25) as scope:
                await side.send(payload)
            if scope.cancelled_caught:
                blocked.set()
                await release.wait()
                return
            sent += 1

    config = CONFIG.replace(
        message_concurrency=concurrency, heartbeat_interval=5.0, heartbeat_timeout=10.0
    )
    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server(flood) as server,
            live(server.url, config=config, on_message=on_message) as conn,
        ):
            await conn.wait_connected()
            gc.collect()
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                await conn.send("go")
                await handlers_full.wait()
                await blocked.wait()
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            stats = conn.stats()
            handler_calls = in_handler
            release.set()
    figure("handler_calls", handler_calls)
    figure("messages_in", stats.messages_in)
    figure("server_sent_before_blocked", sent)
    figure("heap_peak_growth_bytes", peak)
    assert handler_calls == concurrency
    # At the bound the client stops reading: the handlers' messages, as many waiting,
    # and what one read had already brought (asyncio reads up to 256 KiB at once).
    assert stats.messages_in <= 2 * concurrency + 256 * 1024 // size
    assert sent < count // 4  # the server felt the backpressure
    assert peak < 4 * 1024 * 1024, peak


# -- 14. untrusted TLS certificate -----------------------------------------------------


async def test_14_untrusted_certificate_fails_fatal_without_retry(figure: Figure) -> None:
    """Figure: 1 TCP connection at the server's proxy, 0 more in the 0.3 s after
    FAILED; class fatal (TLS verification on by default, never switched off)."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server(ssl_context=server_tls) as server,
            proxied(server) as proxy,
            live(proxy_url(proxy, "wss")) as conn,
        ):
            failure = (await until_settled_in_failed(conn)).failure
            await anyio.sleep(WATCH)  # the window watched for further attempts
            accepted = proxy.stats.links_accepted
    figure("tcp_connections", accepted)
    assert failure.error_class == "fatal"
    assert failure.kind == "tls"
    assert accepted == 1
    assert server.attempts.count == 0  # no handshake request ever got through


# -- 15. 1,000 connect/reset cycles ----------------------------------------------------


@pytest.mark.timeout(120)
async def test_15_a_thousand_reset_cycles_leave_no_task_behind(figure: Figure) -> None:
    """Figure: after 1,000 connect/RST cycles, 0 extra tasks (anyio's running tasks
    and the connection's tasks_alive), 1,001 links; 21-27 s at a load average of 9,
    10 s of them the 0.01 s backoff of each cycle."""
    cycles = 1_000
    config = CONFIG.replace(
        backoff=FixedDelay(MIN_RETRY_DELAY),  # the least a policy may wait
        max_failures=10 * cycles,
        heartbeat_interval=5.0,
        heartbeat_timeout=10.0,
    )
    with anyio.fail_after(100):
        async with websocket_server() as server, proxied(server) as proxy:
            tasks_before = len(anyio.get_running_tasks())
            async with live(proxy_url(proxy), config=config) as conn:
                await conn.wait_connected()
                await server.wait_active(1)
                tasks_connected = len(anyio.get_running_tasks())
                alive_connected = conn.stats().tasks_alive
                started = anyio.current_time()
                for cycle in range(cycles):
                    await proxy.reset_links()
                    while conn.stats().connects < cycle + 2 or conn.state != "CONNECTED":
                        await conn.wait_changed()
                took = anyio.current_time() - started
                await server.wait_active(1)
                tasks_after = len(anyio.get_running_tasks())
                stats = conn.stats()
            await proxy.drop_links()  # the proxy's own task for the last link
            await server.wait_active(0)
            # The server's and the proxy's tasks for that link wind down on their own
            # schedule; a task of ours left behind would never go:
            with anyio.move_on_after(2):
                await poll(lambda: len(anyio.get_running_tasks()) <= tasks_before)
            tasks_closed = len(anyio.get_running_tasks())
            links = proxy.stats.links_accepted
    figure("cycles_s", took)
    figure("extra_tasks_connected", tasks_after - tasks_connected)
    figure("extra_tasks_closed", tasks_closed - tasks_before)
    assert stats.connects == cycles + 1
    assert (tasks_after, stats.tasks_alive) == (tasks_connected, alive_connected)
    assert tasks_closed == tasks_before
    assert links == cycles + 1


# -- 16. every message before a close reaches the application first ------------------


@BOTH_BACKENDS
@pytest.mark.parametrize("acks", [False, True], ids=["iterating", "acking"])
async def test_16_messages_before_a_close_all_arrive_then_the_planned_reconnect(
    figure: Figure, acks: bool
) -> None:
    """Figure: of 200 messages the server sends before closing with 1001, 200 reach an
    application that takes one every 2 ms (heartbeats every 0.05 s; with ``acking``,
    it sends an ack per message), in order; then the planned reconnect."""
    count = 200

    async def push_then_close(side: ServerSide) -> None:
        async def drain() -> None:  # the acks: a server that reads nothing deadlocks
            with contextlib.suppress(Exception):
                while True:
                    await side.recv()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            if side.request_headers.get("x-session") is None:  # only the first session
                for i in range(count):
                    await side.send(f'{{"n": {i}}}')
                await side.close(1001)
            await side.wait_closed()
            tg.cancel_scope.cancel()

    sessions = 0

    class FirstSession:
        async def handshake_headers(self) -> Mapping[str, Secret]:
            nonlocal sessions
            sessions += 1
            return {} if sessions == 1 else {"X-Session": Secret(str(sessions))}

        async def refresh(self) -> bool:
            return False

        async def escalate(self) -> bool:
            return False

    config = CONFIG.replace(heartbeat_interval=0.05, heartbeat_timeout=1.0)
    received: list[int] = []
    with anyio.fail_after(DEADLINE):
        # The server waits for the client's close frame as long as the client takes to
        # read the 200 messages before it, on a busy machine too: an abort (RST) after
        # its close_timeout would make the client's kernel drop the messages not yet
        # read, which no client can help.
        async with (
            websocket_server(push_then_close, close_timeout=DEADLINE) as server,
            live(server.url, protocol="json", config=config, credentials=FirstSession()) as conn,
        ):
            rec = Recorder(conn)
            async for message in conn:
                received.append(message["n"])
                if acks:
                    await conn.send({"ack": message["n"]})
                await anyio.sleep(0.002)
                if len(received) == count:
                    break
            # Then the planned reconnect (the close may still wait behind the messages).
            while [r.trigger for r in rec.records].count("opened") < 2:
                await conn.wait_changed()
    figure("delivered", len(received))
    assert received == list(range(count))
    lost = [r for r in rec.records if (r.source, r.trigger) == ("CONNECTED", "lost")]
    assert [r.error_class for r in lost] == ["planned"]


# -- 17. bytes moving outward prove the link alive ------------------------------------


@BOTH_BACKENDS
async def test_17_a_slow_upload_is_alive_though_no_frame_comes_back(figure: Figure) -> None:
    """Figure: a 300 kB message sent through a 100 kB/s uplink (3 s), heartbeat 0.5 s
    and timeout 1.5 s, the pongs stuck behind it: 0 ``lost`` during the upload; the
    server receives it whole."""
    size = 300_000
    got = anyio.Event()
    sizes: list[int] = []

    async def sink(side: ServerSide) -> None:
        while True:
            message = await side.recv()
            sizes.append(len(message))
            got.set()

    config = CONFIG.replace(heartbeat_interval=0.5, heartbeat_timeout=1.5)
    with anyio.fail_after(DEADLINE):
        async with (
            websocket_server(sink) as server,
            proxied(server) as proxy,
            live(proxy_url(proxy), config=config) as conn,
        ):
            rec = Recorder(conn)
            await conn.wait_connected()
            proxy.set_faults(Faults(bandwidth=100_000), Direction.UPSTREAM)
            started = anyio.current_time()
            await conn.send(b"u" * size)
            await got.wait()
            took = anyio.current_time() - started
            state = conn.state
    figure("upload_s", took)
    assert took > 2 * config.heartbeat_timeout  # the pongs could not have kept it alive
    assert sizes == [size]
    assert state == "CONNECTED"
    assert not [r for r in rec.records if r.trigger == "lost"]


# -- 18. closing takes at most close_timeout ------------------------------------------


async def _handshake_then_never_read(stream: Any) -> None:
    """Complete the WebSocket handshake by hand, then never read again."""
    from websockets.utils import accept_key

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
        + accept_key(key.decode()).encode()
        + b"\r\n\r\n"
    )
    await anyio.sleep_forever()


@BOTH_BACKENDS
async def test_18_leaving_takes_at_most_close_timeout_when_the_server_never_reads(
    figure: Figure,
) -> None:
    """Figure: with 20 MB unsent to a server that stopped reading, leaving ``async with``
    takes at most close_timeout (0.5 s) + 0.1 s: the link is aborted at the deadline."""
    config = CONFIG.replace(close_timeout=0.5, heartbeat_interval=5.0, heartbeat_timeout=10.0)
    with anyio.fail_after(DEADLINE):
        async with raw_server(_handshake_then_never_read) as server:
            conn = live(server.url, config=config)
            async with conn:
                await conn.wait_connected()
                with anyio.move_on_after(0.5):  # send() waits once the buffers are full
                    for _ in range(40):
                        await conn.send(b"z" * 500_000)
                leaving = anyio.current_time()
            took = anyio.current_time() - leaving
    figure("leave_s", took)
    assert conn.state == "CLOSED"
    assert took <= config.close_timeout + MARGIN
