"""The local lwp server: tokens, registration, heartbeat acks, sync pushes, every fault.

The socket server is websockets' asyncio server, so its tests run on asyncio only.
Raw websockets clients check the wire; real ``LiveConnection``\\ s (protocol lwp)
check what a client makes of it.  The in-memory server (the same session logic)
is tested in virtual time, on trio's MockClock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
import pytest
from trio.testing import MockClock
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fsm_live import Config, FixedDelay, LiveConnection
from fsm_live.credentials import Secret, parse_cookies
from fsm_live.lwp.credentials import CookieCredentials
from fsm_live.lwp.faults import (
    BlackHole,
    CloseConnections,
    Drop,
    Fault,
    RefuseRegistration,
    Reject,
    Restart,
    parse_schedule,
)
from fsm_live.lwp.memory import MemoryLwpServer, MemoryRoute
from fsm_live.lwp.protocol import new_mid
from fsm_live.lwp.server import MAX_TOKENS, FaultEvent, LwpServer
from fsm_live.lwp.token import TokenFetchFailed, fetch_token
from fsm_live.transport.memory import MemoryNetwork

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

DEADLINE = 5.0
COOKIES = parse_cookies("unb=77; cna=x")
FAST = Config(
    heartbeat_interval=0.1,
    heartbeat_timeout=0.4,
    stability_window=0.2,
    open_timeout=0.5,
    close_timeout=0.2,
    planned_reconnect_delay=0.05,
    backoff=FixedDelay(0.05),
    max_failures=50,
)
#: For a real client of the real server, both in the test's event loop: a heartbeat
#: timeout that a loop running late on a busy machine does not reach (a silence that long
#: is the server's), and as long as an attempt takes.  FAST is for virtual time.
REAL = FAST.replace(heartbeat_interval=0.2, heartbeat_timeout=1.5, open_timeout=5.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[LwpServer]:
    async with LwpServer(push_interval=None) as running:
        yield running


async def reg(ws: ClientConnection, token: str, did: str = "device-77") -> dict[str, Any]:
    mid = new_mid()
    await ws.send(json.dumps({"lwp": "/reg", "headers": {"token": token, "did": did, "mid": mid}}))
    reply = json.loads(await ws.recv())
    assert reply["headers"]["mid"] == mid
    return dict(reply)


async def wait_closed_code(ws: ClientConnection) -> None:
    """Read until the connection is closed (``ws.protocol.close_rcvd`` then tells how)."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        return


# -- tokens and registration ---------------------------------------------------------------


async def test_token_endpoint_needs_unb_and_issues_registrable_tokens(server: LwpServer) -> None:
    with anyio.fail_after(DEADLINE):
        token = await fetch_token(server.token_url, COOKIES)
        with pytest.raises(TokenFetchFailed, match=r"answered HTTP 401$"):
            await fetch_token(server.token_url, parse_cookies("cna=x"))
        async with connect(server.url) as ws:
            assert (await reg(ws, token.reveal()))["code"] == 200
    assert server.stats().tokens_issued == 1
    assert server.stats().registrations == 1


async def test_registration_refuses_unknown_revoked_and_foreign_tokens(server: LwpServer) -> None:
    good = server.issue_token("77")
    revoked = server.issue_token("77")
    assert server.revoke_token(revoked)
    with anyio.fail_after(DEADLINE):
        async with connect(server.url) as ws:
            assert (await reg(ws, "never-issued"))["code"] == 401
            assert (await reg(ws, revoked.reveal()))["code"] == 401
            assert (await reg(ws, good.reveal(), did="device-78"))["code"] == 401  # not 77's
            assert (await reg(ws, good.reveal()))["code"] == 200
    assert server.stats().registrations_rejected == 3


async def test_tokens_are_bounded(server: LwpServer) -> None:
    first = server.issue_token("77")
    for _ in range(MAX_TOKENS):
        server.issue_token("77")
    assert not server.revoke_token(first)  # forgotten: the oldest goes first


async def test_heartbeats_and_requests_are_acked_by_their_mid(server: LwpServer) -> None:
    token = server.issue_token("77").reveal()
    with anyio.fail_after(DEADLINE):
        async with connect(server.url) as ws:
            await reg(ws, token)
            mids = [new_mid() for _ in range(3)]
            for mid in mids:
                await ws.send(json.dumps({"lwp": "/!", "headers": {"mid": mid}}))
            await ws.send(json.dumps({"lwp": "/r/Send", "headers": {"mid": "req 0"}}))
            replies = [json.loads(await ws.recv()) for _ in range(4)]
    assert [reply["headers"]["mid"] for reply in replies] == [*mids, "req 0"]
    assert {reply["code"] for reply in replies} == {200}
    stats = server.stats()
    assert (stats.heartbeats_acked, stats.request_paths) == (3, ("/r/Send",))


# -- pushes through a real client ----------------------------------------------------------


def lwp_client(
    server: LwpServer,
    token_source: Callable[[Mapping[str, Secret]], Awaitable[Secret]] | None = None,
    **options: Any,
) -> LiveConnection:
    credentials = CookieCredentials(COOKIES, token_source=token_source or server.token_source)
    return LiveConnection(
        server.url, protocol="lwp", config=REAL, credentials=credentials, **options
    )


async def test_multi_item_pushes_are_delivered_once_each_and_acked() -> None:
    delivered: list[dict[str, str]] = []

    async def on_message(message: dict[str, str]) -> None:
        delivered.append(message)

    async with LwpServer(push_interval=0.05, items_per_push=3, duplicate_every=2) as server:
        with anyio.fail_after(DEADLINE):
            async with lwp_client(server, on_message=on_message) as conn:
                await conn.wait_connected()
                pushed = await server.wait_until(
                    lambda s: s.duplicates_sent >= 3 and s.acks_received >= 6
                )
                await server.wait_until(lambda s: s.acks_received >= pushed.pushes_sent)
                stats = conn.stats()
    ids = [message["messageId"] for message in delivered]
    assert ids == [f"msg-{n}" for n in range(1, len(ids) + 1)]  # every item, in order, once
    assert len(ids) >= 3 * pushed.pushes_sent - 3  # all items of every push (the last may lag)
    assert stats.duplicates_dropped >= 3
    assert stats.messages_in == len(ids)
    assert set(server.stats().acked_mids) >= set(pushed.acked_mids)


async def test_a_wrong_token_ends_failed_after_exactly_one_refresh() -> None:
    calls = 0

    async def wrong(cookies: Mapping[str, Secret]) -> Secret:
        nonlocal calls
        calls += 1
        return Secret("not-a-token")

    async with LwpServer(push_interval=None) as server:
        with anyio.fail_after(DEADLINE):
            async with lwp_client(server, wrong) as conn:
                state = await conn.wait_for("FAILED", "CONNECTED")
                while conn.stats().tasks_alive:  # the escalation (none here) is over
                    await conn.wait_changed()
                assert conn.state == state == "FAILED"
                assert conn.stats().failures == {"auth": 2}
    assert calls == 2  # the first token, and exactly one refresh
    assert server.stats().registrations_rejected == 2


async def test_a_refresher_with_a_good_token_recovers_to_connected() -> None:
    calls = 0

    async with LwpServer(push_interval=None) as server:

        async def bad_then_good(cookies: Mapping[str, Secret]) -> Secret:
            nonlocal calls
            calls += 1
            return Secret("stale") if calls == 1 else await server.token_source(cookies)

        with anyio.fail_after(DEADLINE):
            async with lwp_client(server, bad_then_good) as conn:
                await conn.wait_connected()
                transitions = dict(conn.stats().transitions)
    assert calls == 2
    assert transitions[("CONNECTING", "connect_failed", "RECONNECTING")] == 1
    assert transitions[("CONNECTING", "opened", "CONNECTED")] == 1


# -- faults, each observed by a client -----------------------------------------------------


async def test_drop_aborts_without_a_close_frame(server: LwpServer) -> None:
    with anyio.fail_after(DEADLINE):
        async with connect(server.url) as ws:
            await server.wait_until(lambda s: s.connections_open == 1)
            await server.inject(Drop())
            await wait_closed_code(ws)
            assert ws.protocol.close_rcvd is None  # no close frame: the client reports 1006


async def test_close_sends_the_code(server: LwpServer) -> None:
    with anyio.fail_after(DEADLINE):
        async with connect(server.url) as ws:
            await server.wait_until(lambda s: s.connections_open == 1)
            await server.inject(CloseConnections(1008))
            await wait_closed_code(ws)
            assert ws.protocol.close_rcvd is not None
            assert ws.protocol.close_rcvd.code == 1008


async def test_reject_answers_n_handshakes_with_the_status_and_retry_after(
    server: LwpServer,
) -> None:
    await server.inject(Reject(503, 2, retry_after=1.5))
    with anyio.fail_after(DEADLINE):
        for _ in range(2):
            with pytest.raises(InvalidStatus) as caught:
                async with connect(server.url):
                    pass
            assert caught.value.response.status_code == 503
            assert caught.value.response.headers["Retry-After"] == "2"
        async with connect(server.url):
            pass
    assert (server.stats().handshakes, server.stats().handshakes_rejected) == (3, 2)


async def test_refuse_reg_refuses_the_next_registrations_only(server: LwpServer) -> None:
    token = server.issue_token("77").reveal()
    await server.inject(RefuseRegistration(1))
    with anyio.fail_after(DEADLINE):
        async with connect(server.url) as ws:
            assert (await reg(ws, token))["code"] == 401
            assert (await reg(ws, token))["code"] == 200


async def test_blackhole_stops_answering_but_keeps_the_socket(server: LwpServer) -> None:
    token = server.issue_token("77").reveal()
    events: list[FaultEvent] = []
    over = anyio.Event()
    server.on_fault(events.append)
    server.on_fault(lambda event: over.set() if event.ended else None)
    with anyio.fail_after(DEADLINE):
        async with connect(server.url) as ws:
            await reg(ws, token)
            # 1 s of silence: the 0.2 s watched for an answer, and the next send, come
            # well within it on a busy machine.
            await server.inject(BlackHole(1.0))
            await ws.send(json.dumps({"lwp": "/!", "headers": {"mid": "silent 0"}}))
            with anyio.move_on_after(0.2) as quiet:
                await ws.recv()
            assert quiet.cancelled_caught  # no answer, no close
            await ws.send(json.dumps({"lwp": "/!", "headers": {"mid": "lost 0"}}))
            await over.wait()
            await ws.send(json.dumps({"lwp": "/!", "headers": {"mid": "back 0"}}))
            reply = json.loads(await ws.recv())
    assert reply["headers"]["mid"] == "back 0"
    assert [str(event) for event in events] == ["blackhole 1s", "blackhole 1s over"]


async def test_restart_closes_with_1012_and_refuses_connections_for_its_downtime(
    server: LwpServer,
) -> None:
    port = server.port
    events: list[str] = []
    over = anyio.Event()
    server.on_fault(lambda event: events.append(str(event)))
    server.on_fault(lambda event: over.set() if event.ended else None)
    with anyio.fail_after(DEADLINE):
        async with connect(server.url) as ws:
            await server.wait_until(lambda s: s.connections_open == 1)
            # Refused as soon as the restart took effect: its 1 s of downtime leaves a
            # busy machine room for that one attempt.
            await server.inject(Restart(1.0))
            with pytest.raises(OSError, match="All connection attempts failed"):
                await anyio.connect_tcp("127.0.0.1", port)
            await wait_closed_code(ws)
            assert ws.protocol.close_rcvd is not None
            assert ws.protocol.close_rcvd.code == 1012
        await over.wait()  # listening again
        async with connect(server.url):
            pass
    assert server.port == port
    assert events == ["restart 1s", "restart 1s over"]


async def test_the_schedule_fires_at_its_offsets() -> None:
    events: list[tuple[float, str]] = []
    rejecting = anyio.Event()
    # A reject waits for the next handshake, whenever it comes; the close needs the second
    # client connected before 1 s, which leaves a busy machine 0.9 s for one handshake.
    schedule = parse_schedule("100ms reject 503; 1s close 4002")
    async with LwpServer(push_interval=None, schedule=schedule) as server:
        server.on_fault(lambda event: events.append((event.at, str(event))))
        server.on_fault(lambda event: rejecting.set())
        with anyio.fail_after(DEADLINE):
            await rejecting.wait()
            with pytest.raises(InvalidStatus) as caught:
                async with connect(server.url):
                    pass
            async with connect(server.url) as ws:
                await wait_closed_code(ws)
                assert ws.protocol.close_rcvd is not None
                code = ws.protocol.close_rcvd.code
    assert (caught.value.response.status_code, code) == (503, 4002)
    assert [text for _, text in events] == ["reject 503 x1", "close 4002"]
    # Never early; late only by how late a busy machine runs a timer (bounded by the
    # 0.9 s between the entries).
    assert 0.1 <= events[0][0] < 1.0
    assert 1.0 <= events[1][0] < 1.9


async def test_faults_seen_by_a_live_connection() -> None:
    async with LwpServer(push_interval=None) as server:
        with anyio.fail_after(DEADLINE):
            async with lwp_client(server) as conn:
                for fault, error_class in (
                    (Drop(), "lost"),
                    (CloseConnections(1012), "planned"),
                    (BlackHole(2 * REAL.heartbeat_timeout), "lost"),  # found while it lasts
                    (CloseConnections(4001), "retry"),
                ):
                    await conn.wait_connected()
                    await server.wait_until(lambda s: s.registrations >= 1)
                    before = conn.stats().failures.get(error_class, 0)
                    await server.inject(fault)
                    while conn.stats().failures.get(error_class, 0) == before:
                        await conn.wait_changed()
                await conn.wait_connected()
                failures = dict(conn.stats().failures)
    assert failures == {"lost": 2, "planned": 1, "retry": 1}


# -- the same server in memory, in virtual time --------------------------------------------


MEMORY_URL = "ws://lwp.test/"


class TestMemoryLwpServer:
    """MemoryLwpServer answers as LwpServer does (the same LwpService), and carries out
    each fault with the memory network's overrides and ServerLink methods."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    @staticmethod
    def client(server: MemoryLwpServer, **options: Any) -> LiveConnection:
        credentials = CookieCredentials(COOKIES, token_source=server.token_source)
        return LiveConnection(
            server.url,
            protocol="lwp",
            config=FAST,
            credentials=credentials,
            transport=server.transport,
            **options,
        )

    async def test_pushes_are_delivered_once_each_and_acked(self) -> None:
        delivered: list[dict[str, str]] = []

        async def on_message(message: dict[str, str]) -> None:
            delivered.append(message)

        server = MemoryLwpServer(
            MemoryNetwork(), MEMORY_URL, push_interval=0.05, items_per_push=3, duplicate_every=2
        )
        with anyio.fail_after(60):
            async with server, self.client(server, on_message=on_message) as conn:
                await conn.wait_connected()
                await anyio.sleep(10.01)  # off the pushes' 0.05 s grid: all 200 handled
                stats, served = conn.stats(), server.stats()
        # Every item once (handlers run concurrently: trio starts them in any order).
        ids = sorted(int(message["messageId"].removeprefix("msg-")) for message in delivered)
        assert ids == list(range(1, len(ids) + 1))
        assert served.pushes_sent == 200
        assert len(ids) == 3 * served.pushes_sent
        assert stats.duplicates_dropped == served.duplicates_sent == 100  # every 2nd push
        assert served.acks_received == served.pushes_sent
        assert stats.heartbeats_acked == served.heartbeats_acked > 0
        assert (served.handshakes, served.registrations, served.tokens_issued) == (1, 1, 1)
        assert served.connections_open == 1

    async def test_a_wrong_token_ends_failed_after_exactly_one_refresh(self) -> None:
        async def wrong(cookies: Mapping[str, Secret]) -> Secret:
            return Secret("not-a-token")

        server = MemoryLwpServer(MemoryNetwork(), MEMORY_URL, push_interval=None)
        credentials = CookieCredentials(COOKIES, token_source=wrong)
        with anyio.fail_after(60):
            async with (
                server,
                LiveConnection(
                    server.url,
                    protocol="lwp",
                    config=FAST,
                    credentials=credentials,
                    transport=server.transport,
                ) as conn,
            ):
                assert await conn.wait_for("FAILED") == "FAILED"
                assert conn.stats().failures == {"auth": 2}
        assert server.stats().registrations_rejected == 2

    @pytest.mark.parametrize(
        ("fault", "error_class"),
        [
            (Drop(), "lost"),
            (CloseConnections(1012), "planned"),
            (CloseConnections(4001), "retry"),
            (BlackHole(0.6), "lost"),
        ],
    )
    async def test_faults_on_open_links(self, fault: Fault, error_class: str) -> None:
        server = MemoryLwpServer(MemoryNetwork(), MEMORY_URL, push_interval=None)
        events: list[str] = []
        server.on_fault(lambda event: events.append(str(event)))
        with anyio.fail_after(60):
            async with server, self.client(server) as conn:
                await conn.wait_connected()
                await server.inject(fault)
                while not conn.stats().failures:
                    await conn.wait_changed()
                assert dict(conn.stats().failures) == {error_class: 1}
                await conn.wait_connected()
                await anyio.sleep(1)
        assert events[0] == str(fault)
        assert events[1:] == ([f"{fault} over"] if isinstance(fault, BlackHole) else [])

    async def test_restart_closes_with_1012_and_refuses_for_its_downtime(self) -> None:
        network = MemoryNetwork()
        server = MemoryLwpServer(network, MEMORY_URL, push_interval=None)
        events: list[tuple[float, str]] = []
        server.on_fault(lambda event: events.append((event.at, str(event))))
        config = attrs.evolve(FAST, backoff=FixedDelay(0.1), planned_reconnect_delay=0.01)
        credentials = CookieCredentials(COOKIES, token_source=server.token_source)
        with anyio.fail_after(60):
            async with (
                server,
                LiveConnection(
                    server.url,
                    protocol="lwp",
                    config=config,
                    credentials=credentials,
                    transport=server.transport,
                ) as conn,
            ):
                await conn.wait_connected()
                await server.inject(Restart(0.35))
                assert server.route.blocked_by == "refuse"
                await server.wait_until(lambda s: s.registrations == 2)
                failures = dict(conn.stats().failures)
        assert failures["planned"] == 1
        assert failures["network"] >= 2  # refused while nothing listened
        assert server.route.blocked_by is None
        assert [text for _, text in events] == ["restart 350ms", "restart 350ms over"]
        assert events[1][0] - events[0][0] == pytest.approx(0.35)

    async def test_reject_answers_only_handshakes_that_reach_the_server(self) -> None:
        network = MemoryNetwork()
        server = MemoryLwpServer(network, MEMORY_URL, push_interval=None)
        with anyio.fail_after(60):
            async with server, self.client(server) as conn:
                await conn.wait_connected()
                server.route.refuse("outage")  # the network in front of the server is down
                await server.inject(Reject(503, 1, retry_after=2))
                await server.inject(Drop())
                while conn.state != "WAITING":  # refused until its endpoint is down
                    await conn.wait_changed()
                assert server.stats().handshakes_rejected == 0  # none got through yet
                server.route.clear("outage")
                await conn.wait_connected()
                failures = dict(conn.stats().failures)
        # The 503 answered a probe once the network was back: the endpoint's outage
        # going on, not a failure of the connection's.
        assert "server" not in failures
        assert (server.stats().handshakes, server.stats().handshakes_rejected) == (3, 1)

    async def test_refuse_reg_refuses_the_next_registration(self) -> None:
        server = MemoryLwpServer(MemoryNetwork(), MEMORY_URL, push_interval=None)
        with anyio.fail_after(60):
            async with server:
                await server.inject(RefuseRegistration(1))
                async with self.client(server) as conn:
                    await conn.wait_connected()
                    failures = dict(conn.stats().failures)
        assert failures == {"auth": 1}
        assert (server.stats().registrations_rejected, server.stats().registrations) == (1, 1)


def test_a_route_applies_its_strongest_override_until_every_cause_is_cleared() -> None:
    network = MemoryNetwork()
    route = MemoryRoute(network, MEMORY_URL)
    assert route.blocked_by is None
    route.black_hole("network")
    route.refuse("restart")
    assert route.blocked_by == "refuse"  # a restart under a black hole: refused
    route.clear("restart")
    assert route.blocked_by == "black_hole"  # the restart is over, the black hole is not
    route.reject("handshake", 401)
    assert route.blocked_by == "black_hole"
    route.clear("network")
    assert route.blocked_by == "reject"
    route.clear("handshake")
    route.clear("never set")
    assert route.blocked_by is None
