"""The per-connection hooks a cluster needs, on the public API: ``LiveConnection(owned=...)``
checked before each inbound message and each send, ``LiveConnection.abort()`` with a
TCP reset, and a ``Fleet`` driven by a coordinator (its ``acquire``, ``release``,
``abort`` and ``drain``), on both backends, against real sockets on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import pytest
from servers import ServerSide, websocket_server

from fsm_live import Config, Fleet, LiveConnection
from fsm_live.cluster import Fence, HoldRecord, LocalCoordinator, MemberView, Ownership
from fsm_live.errors import ConnectionClosed

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

CONFIG = Config(heartbeat_interval=60, heartbeat_timeout=120, close_timeout=2)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Flag:
    """An ownership check the test flips."""

    def __init__(self) -> None:
        self.value = True
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.value


async def hold_open(side: ServerSide) -> None:
    await side.wait_closed()


async def test_a_disowned_connection_handles_no_further_message_and_aborts() -> None:
    got: list[Any] = []
    owned = Flag()

    async def take(message: Any) -> None:
        got.append(message)

    async with (
        websocket_server(hold_open) as server,
        LiveConnection(
            server.url, protocol="json", config=CONFIG, on_message=take, owned=owned
        ) as conn,
    ):
        await conn.wait_connected()
        await server.wait_active(1)
        side = server.sides[0]
        await side.send('{"n": 1}')
        with anyio.fail_after(5):
            while not got:
                await conn.wait_changed()
        owned.value = False
        await side.send('{"n": 2}')
        with anyio.fail_after(5):
            code = await side.wait_closed()
        assert code == 1006  # no close frame: aborted
        assert conn.state == "CLOSED"
        assert got == [{"n": 1}]
        with pytest.raises(ConnectionClosed):
            await conn.send({"n": 3})


async def test_send_while_disowned_raises_and_writes_nothing() -> None:
    owned = Flag()
    async with (
        websocket_server(hold_open) as server,
        LiveConnection(server.url, protocol="json", config=CONFIG, owned=owned) as conn,
    ):
        await conn.wait_connected()
        owned.value = False
        with pytest.raises(ConnectionClosed, match="no longer owned"):
            await conn.send({"n": 1})
        assert conn.state == "CLOSED"
        assert conn.stats().messages_out == 0
        with anyio.fail_after(5):
            assert await server.sides[0].wait_closed() == 1006


async def test_a_connection_not_owned_from_the_start_never_sends_its_handshake() -> None:
    owned = Flag()
    owned.value = False
    async with websocket_server(hold_open) as server:
        async with LiveConnection(server.url, config=CONFIG, owned=owned) as conn:
            with anyio.fail_after(5):
                await conn.wait_for("CLOSED", raise_on_failed=False)
        assert server.attempts.count == 0  # the TCP connection was reset before any request


def _accept_key(request: bytes) -> str:
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
            return base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
    raise AssertionError(request)


async def test_abort_resets_the_tcp_connection() -> None:
    """SO_LINGER 0: the server reads a reset, not an end of stream (a FIN) nor a close
    frame; bytes the client had queued are never delivered later."""
    outcome: list[str] = []
    ready, finished = anyio.Event(), anyio.Event()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await answer_then_read(stream)

    async def answer_then_read(stream: anyio.abc.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive()
        await stream.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + _accept_key(request).encode()
            + b"\r\n\r\n"
        )
        ready.set()
        try:
            while True:
                await stream.receive()
        except anyio.EndOfStream:
            outcome.append("end of stream")
        except (anyio.BrokenResourceError, ConnectionResetError):
            outcome.append("reset")
        finished.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, serve)
        async with LiveConnection(f"ws://127.0.0.1:{port}/", config=CONFIG) as conn:
            await conn.wait_connected()
            await ready.wait()
            conn.abort("test")
            assert conn.state == "CLOSED"
            conn.abort("again")  # idempotent
        with anyio.fail_after(5):
            await finished.wait()
        task_group.cancel_scope.cancel()
    assert outcome == ["reset"]


# -- a Fleet and its coordinator ----------------------------------------------------------


async def test_the_default_coordinator_holds_every_account_at_once_and_records_it() -> None:
    async with websocket_server(hold_open) as server:
        async with Fleet() as fleet:
            assert isinstance(fleet.coordinator, LocalCoordinator)
            conn = await fleet.add("alice", server.url, config=CONFIG)
            assert conn is not None
            assert fleet["alice"] is conn
            await conn.wait_connected()
            await fleet.remove("alice")
            assert fleet.accounts() == []
            await fleet.add("bob", server.url, config=CONFIG)
            members = fleet.coordinator.members()
            assert [(m.info.worker, m.accounts) for m in members] == [("local", 1)]
        holds = fleet.coordinator.holds()
    assert [(h.account, h.token, h.ended) for h in holds] == [
        ("alice", 1, "removed"),
        ("bob", 2, "closed"),
    ]
    assert all(h.until is not None and h.until >= h.since for h in holds)


class LaterCoordinator:
    """Grants nothing at ``want``; the test grants with :meth:`grant` (as etcd's would)."""

    def __init__(self) -> None:
        self.fence = Fence()
        self.holder: Any = None
        self.unwanted: list[str] = []
        self.left = anyio.Event()
        self.drained = False

    worker_id = "w1"
    status = "active"

    async def run(self, holder: Any, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.holder = holder
        task_status.started()
        await self.left.wait()
        await holder.stopped()

    def want(self, key: str) -> Ownership | None:
        return None

    async def grant(self, key: str, token: int) -> Ownership:
        ownership = Ownership(key, "w1", token, self.fence)
        await self.holder.acquire(key, ownership)
        return ownership

    async def unwant(self, key: str) -> None:
        self.unwanted.append(key)

    async def drain(self) -> None:
        self.drained = True
        self.leave()

    def leave(self) -> None:
        self.left.set()

    def members(self) -> tuple[MemberView, ...]:
        return ()

    def holds(self) -> tuple[HoldRecord, ...]:
        return ()


async def wait(predicate: Callable[[], bool], fleet: Fleet) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await fleet.wait_changed()


async def test_accounts_start_when_granted_and_stop_when_taken_back() -> None:
    coordinator = LaterCoordinator()
    async with websocket_server(hold_open) as server, Fleet(coordinator=coordinator) as fleet:
        assert await fleet.add("alice", server.url, config=CONFIG) is None
        assert fleet.accounts() == ["alice"]
        assert "alice" not in fleet
        # Its endpoint is not this worker's until the account runs here.
        assert fleet.endpoints() == ()
        await coordinator.grant("alice", 7)
        conn = fleet["alice"]
        assert [status.members for status in fleet.endpoints()] == [1]
        await conn.wait_connected()
        await fleet.release("alice")  # revoke before assign: closed when this returns
        assert "alice" not in fleet
        assert conn.state == "CLOSED"
        assert await server.sides[0].wait_closed() == 1000  # closed cleanly
        ownership = await coordinator.grant("alice", 8)
        await fleet["alice"].wait_connected()
        ownership.release()
        fleet.abort("alice")  # the coordinator's ownership ended: reset now
        await wait(lambda: "alice" not in fleet, fleet)
        assert await server.sides[1].wait_closed() == 1006
        await fleet.remove("alice")
        assert coordinator.unwanted == ["alice"]
        assert fleet.accounts() == []
        await fleet.drain()
        assert coordinator.drained


async def test_a_fenced_member_aborts_at_its_next_message_and_a_stale_grant_starts_nothing() -> (
    None
):
    coordinator = LaterCoordinator()
    got: list[Any] = []

    async def take(message: Any) -> None:
        got.append(message)

    async with websocket_server(hold_open) as server, Fleet(coordinator=coordinator) as fleet:
        await fleet.add("alice", server.url, protocol="json", config=CONFIG, on_message=take)
        await coordinator.grant("alice", 1)
        await fleet["alice"].wait_connected()
        coordinator.fence.trip()  # the worker's fence passed
        await server.sides[0].send('{"n": 1}')
        assert await server.sides[0].wait_closed() == 1006
        assert got == []
        assert fleet["alice"].state == "CLOSED"
        stale = Ownership("bob", "w1", 2, coordinator.fence)
        await fleet.add("bob", server.url, config=CONFIG)
        await fleet.acquire("bob", stale)
        assert "bob" not in fleet


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_recorder_names_sessions_by_account_and_counts_stale_frames() -> None:
    """fsm_live.testing.recorder: two sessions of one account at once; the older one's
    acknowledgements after the newer opened are stale frames."""
    from fsm_live.credentials import Secret
    from fsm_live.lwp.credentials import lwp_credentials
    from fsm_live.testing.recorder import SessionRecorder

    async with SessionRecorder(push_interval=0.05) as recorder:

        def connection() -> LiveConnection:
            credentials = lwp_credentials(Secret("unb=alice"), url=recorder.url)
            return LiveConnection(
                recorder.url, protocol="lwp", credentials=credentials, config=CONFIG
            )

        async with connection() as first:
            await first.wait_connected()
            async with connection() as second:
                await second.wait_connected()
                with anyio.fail_after(5):
                    while not recorder.report()["stale_frames"]:
                        await first.wait_changed()
        report = recorder.report()
    assert report["accounts"] == 1
    assert report["sessions"] == 2
    assert report["overlaps"] == 1
    assert [s["account"] for s in report["all"]] == ["alice", "alice"]
    assert report["stale_sessions"][0]["id"] == report["all"][0]["id"]
