"""Nothing lost, nothing falsely lost: the delivery and liveness promises on the public API.

docs/architecture.md rules 8 and 10, in virtual time (trio's MockClock, the
in-memory network): frames ``send()`` accepted survive a broken link; requests
are delivered at least once across reconnects and half-open links, in order,
and exactly once to a server that de-duplicates by id; frames received on a link
being rotated reach the application; heartbeats go out on schedule whatever the
peer answers; credentials are refreshed by age and a failed refresh is retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from fsm_live import Config, Secret, connect
from fsm_live.errors import (
    ConnectionClosed,
    CredentialsRejected,
    RequestTimeout,
    TransportError,
    UsageError,
)
from fsm_live.protocols import JsonProtocol
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink

pytestmark = pytest.mark.anyio

URL = "ws://server.test/feed"
CONFIG = Config(heartbeat_interval=5, heartbeat_timeout=12, stability_window=2)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class AckingServer:
    """A json server that answers each request ``{"id": n, ...}`` with ``{"id": n, "ok":
    true}``, processes each id once (as a server de-duplicating by id does), and can
    be told to break the next link after some frames."""

    def __init__(self) -> None:
        self.processed: list[int] = []  # ids, first occurrence only, in arrival order
        self.received: list[int] = []  # every id received, duplicates too
        self.links: list[ServerLink] = []
        self.breaks = 0  # links still to reset, each 3 frames in

    async def __call__(self, link: ServerLink) -> None:
        self.links.append(link)
        count = 0
        while True:
            try:
                frame = await link.receive()
            except TransportError:
                return
            request = json.loads(frame)
            self.received.append(request["id"])
            if request["id"] not in self.processed:
                self.processed.append(request["id"])
            count += 1
            if self.breaks and count >= 3:
                self.breaks -= 1
                link.reset()  # before the ack: the client must send it again
                return
            await link.send(json.dumps({"id": request["id"], "ok": True}))


async def test_requests_are_delivered_exactly_once_in_order_across_reconnects() -> None:
    """The issue's "done when": every request answered, each processed once by a server
    that de-duplicates by id, in order, across 10 forced reconnects and a half-open
    window."""
    network = MemoryNetwork()
    server = AckingServer()
    answers: list[int] = []
    async with (
        network.serve(URL, server),
        connect(
            URL,
            protocol=JsonProtocol(ack_key="id"),
            config=CONFIG,
            transport=MemoryTransport(network),
        ) as conn,
    ):
        await conn.wait_connected()

        async def one(n: int, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            task_status.started()  # the parent goes on once this request was sent
            answer = await conn.request({"id": n, "body": f"message {n}"}, timeout=600)
            assert answer == {"id": n, "ok": True}
            answers.append(n)

        async with anyio.create_task_group() as requests:
            for n in range(200):
                if n % 20 == 10:
                    server.breaks += 1  # 10 forced reconnects, each 3 frames into a link
                if n == 150:  # a half-open window: the link answers nothing any more
                    server.links[-1].black_hole()
                await requests.start(one, n)
                await anyio.sleep(0.05)
    assert sorted(answers) == list(range(200))
    assert server.processed == list(range(200))  # in order, once each
    assert len(server.received) > 200  # some were sent again: at-least-once did its work
    stats = conn.stats()
    assert stats.acknowledged == 200
    assert stats.resent > 0
    assert len(server.links) >= 12  # 10 resets and the half-open link, each left
    assert stats.transitions[("CONNECTED", "lost", "RECONNECTING")] == len(server.links) - 1
    assert "FAILED" not in {dest for (_, _, dest) in stats.transitions}  # acks proved it


async def test_a_request_without_an_answer_times_out_and_is_not_sent_again() -> None:
    network = MemoryNetwork()
    frames: list[str] = []

    async def silent(link: ServerLink) -> None:
        while True:
            frames.append(str(await link.receive()))

    async with (
        network.serve(URL, silent),
        connect(
            URL,
            protocol=JsonProtocol(ack_key="id"),
            config=CONFIG,
            transport=MemoryTransport(network),
        ) as conn,
    ):
        await conn.wait_connected()
        with pytest.raises(RequestTimeout):
            await conn.request({"op": "ping"}, timeout=3)
        assert len(frames) == 1
        assert json.loads(frames[0]) == {"op": "ping", "id": 1}  # the id it was given
        stats = conn.stats()
        assert stats.buffered == 0
        # docs/protocol.md: a frame never acknowledged is counted, a request's too.
        assert (stats.unacknowledged, stats.acknowledged) == (1, 0)


async def test_request_needs_a_protocol_that_acknowledges() -> None:
    network = MemoryNetwork()
    async with (
        network.serve(URL, lambda link: anyio.sleep_forever()),
        connect(URL, protocol="json", config=CONFIG, transport=MemoryTransport(network)) as conn,
    ):
        with pytest.raises(UsageError, match="no acknowledgements"):
            await conn.request({"op": "x"})


async def test_pending_requests_fail_when_the_connection_closes() -> None:
    network = MemoryNetwork()
    network.refuse(URL)
    outcome: list[BaseException] = []
    async with connect(
        URL, protocol=JsonProtocol(ack_key="id"), config=CONFIG, transport=MemoryTransport(network)
    ) as conn:

        async def ask() -> None:
            try:
                await conn.request({"op": "x"}, timeout=60)
            except ConnectionClosed as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ask)
            await anyio.sleep(1)
            await conn.close()
    assert len(outcome) == 1


async def test_a_frame_in_the_write_buffer_at_a_break_is_sent_again_in_order() -> None:
    """Issue item 2 in virtual time: a peer that stops reading, then resets.  The frame
    ``send()`` was waiting to write, and every frame still in this process, reach
    the server on the next link, in order."""
    network = MemoryNetwork()
    received: list[list[str]] = []
    first = anyio.Event()
    last_arrived = anyio.Event()

    async def stop_reading_then_reset(link: ServerLink) -> None:
        got: list[str] = []
        received.append(got)
        if len(received) == 1:
            link.pause_reading()
            await first.wait()
            link.reset()
            return
        while True:
            try:
                got.append(str(await link.receive()))
            except TransportError:
                return
            if got[-1] == "last":
                last_arrived.set()

    big = "x" * 50_000
    async with (
        network.serve(URL, stop_reading_then_reset),
        connect(URL, config=CONFIG, transport=MemoryTransport(network)) as conn,
    ):
        await conn.wait_connected()
        sent = 0
        while True:  # until send() waits: the write buffer is full
            with anyio.move_on_after(0.5) as waited:
                await conn.send(f"{sent} {big}")
            sent += 1
            if waited.cancelled_caught:
                break
        first.set()  # the server resets the link while send() waits
        await conn.wait_for("RECONNECTING")
        await conn.wait_connected()
        await conn.send("last")
        await last_arrived.wait()
    again = [int(frame.split()[0]) for frame in received[1][:-1]]
    assert again, "nothing was sent again"
    assert again == list(range(again[0], sent))  # in order, up to the one send() waited on
    assert conn.stats().resent == len(again)


async def test_rotations_lose_no_message_in_virtual_time() -> None:
    """A server pushing steadily; three rotations in a row; every message the server
    sent reaches the application, in order (the in-memory network has no latency:
    tests/test_delivery_tcp.py keeps messages in flight across the rotation)."""
    network = MemoryNetwork()
    pushed: list[int] = []

    async def push(link: ServerLink) -> None:
        while True:
            number = len(pushed)
            try:
                await link.send(str(number))
            except TransportError:
                return
            pushed.append(number)
            await anyio.sleep(0.001)

    got: list[int] = []
    async with (
        network.serve(URL, push),
        connect(URL, config=CONFIG, transport=MemoryTransport(network)) as conn,
    ):
        await conn.wait_connected()

        async def read() -> None:
            got.extend([int(message) async for message in conn])

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            for _ in range(3):
                await anyio.sleep(0.5)
                await conn.rotate("test")
                await conn.wait_connected()
            await anyio.sleep(0.5)
            await conn.close()
    assert conn.stats().transitions[("CONNECTED", "rotate", "CONNECTING")] == 3
    assert got == pushed  # every one, in order


async def test_heartbeats_go_out_every_interval_whatever_the_peer_answered() -> None:
    """Issue item 7: a peer that answers nothing gets a heartbeat each interval until
    the link is declared lost at heartbeat_timeout (not one ping waited on)."""
    network = MemoryNetwork()
    async with (
        network.serve(URL, lambda link: link.black_hole() or anyio.sleep_forever()),
        connect(URL, config=CONFIG, transport=MemoryTransport(network)) as conn,
    ):
        await conn.wait_connected()
        connected_at = anyio.current_time()
        await conn.wait_for("RECONNECTING")
        lost_after = anyio.current_time() - connected_at
        sent = conn.stats().heartbeats_sent
    assert lost_after == pytest.approx(12)
    assert sent == 2  # at 5 s and 10 s


async def test_a_frame_that_never_completes_is_not_life() -> None:
    """Rule 8: a peer trickling one byte a second inside an unfinished frame, and
    answering nothing, is lost at heartbeat_timeout."""
    network = MemoryNetwork()

    async def trickle(link: ServerLink) -> None:
        link.black_hole()  # pings go unanswered
        link.send_raw(b"\x81\x7e\xff\xff")  # a text frame of 65,535 bytes, announced
        while True:
            await anyio.sleep(1)
            link.send_raw(b"a")

    async with (
        network.serve(URL, trickle),
        connect(URL, config=CONFIG, transport=MemoryTransport(network)) as conn,
    ):
        await conn.wait_connected()
        connected_at = anyio.current_time()
        await conn.wait_for("RECONNECTING")
        assert anyio.current_time() - connected_at == pytest.approx(12)
        failure = conn.stats().last_error
    assert "heartbeat" in failure


async def test_any_complete_frame_is_life() -> None:
    """Rule 8: pongs never come, but a message every 10 s (less than the 12 s
    heartbeat timeout) keeps the link up for an hour."""
    network = MemoryNetwork()

    async def chatter(link: ServerLink) -> None:
        link.black_hole()
        while True:
            await anyio.sleep(10)
            link.send_raw(b"\x81\x02hi")  # written raw: the black hole still speaks

    async with (
        network.serve(URL, chatter),
        connect(URL, config=CONFIG, transport=MemoryTransport(network)) as conn,
    ):
        await conn.wait_connected()
        await anyio.sleep(3600)
        assert conn.state == "CONNECTED"
        assert conn.stats().transitions.get(("CONNECTED", "lost", "RECONNECTING"), 0) == 0


class TokenCredentials:
    """A provider with a token (refreshed by age), counting its calls."""

    def __init__(self, *, fail_refreshes: int = 0) -> None:
        self.token = 0
        self.refresh_token_calls: list[float] = []
        self.refreshes = 0
        self.fail_refreshes = fail_refreshes

    async def handshake_headers(self) -> Mapping[str, Secret]:
        return {"Authorization": Secret(f"Bearer {self.token}")}

    async def refresh(self) -> bool:
        self.refreshes += 1
        if self.fail_refreshes:
            self.fail_refreshes -= 1
            raise RuntimeError("the token endpoint is down")
        self.token += 1
        return True

    async def refresh_token(self) -> bool:
        self.refresh_token_calls.append(anyio.current_time())
        self.token += 1
        return True

    async def escalate(self) -> bool:
        return False


async def test_the_token_is_refreshed_by_its_age_across_reconnects() -> None:
    """Issue item 8: a link that reconnects every 30 s, more often than the 100 s refresh
    interval, still refreshes its token every 100 s (by age, not by connection time)."""
    network = MemoryNetwork()

    async def short_lived(link: ServerLink) -> None:
        await anyio.sleep(30)
        await link.close(1001)

    credentials = TokenCredentials()
    config = CONFIG.replace(token_refresh_interval=100)
    async with (
        network.serve(URL, short_lived),
        connect(
            URL, config=config, credentials=credentials, transport=MemoryTransport(network)
        ) as conn,
    ):
        await conn.wait_connected()
        started = anyio.current_time()
        await anyio.sleep(450)
    ages = [at - started for at in credentials.refresh_token_calls]
    assert len(ages) == 4, ages  # about 100, 200, 300, 400 s
    for n, age in enumerate(ages, start=1):
        assert 100 * n <= age <= 100 * n + 31  # at once, or by the next dial
    assert conn.stats().token_refreshes == 4


class AgedCredentials(TokenCredentials):
    """A provider whose cookies are refreshed by age too (an lwp account's)."""

    def __init__(self) -> None:
        super().__init__()
        self.refresh_cookies_calls: list[float] = []

    async def refresh_cookies(self) -> bool:
        self.refresh_cookies_calls.append(anyio.current_time())
        return True


async def test_credentials_age_from_the_connect_on_a_clock_far_from_zero() -> None:
    """A monotonic clock reads hours on a host up for a while: the cookies given with the
    provider, and the token the first dial fetched, are refreshed one interval after the
    connect, not at once (their age does not count from the clock's zero)."""
    network = MemoryNetwork()
    await anyio.sleep(80_000)  # the host has been up for most of a day
    credentials = AgedCredentials()
    config = CONFIG.replace(token_refresh_interval=600, cookie_refresh_interval=3600)
    async with (
        network.serve(URL, lambda link: anyio.sleep_forever()),
        connect(
            URL, config=config, credentials=credentials, transport=MemoryTransport(network)
        ) as conn,
    ):
        await conn.wait_connected()
        started = anyio.current_time()
        await anyio.sleep(590)
        assert credentials.refresh_token_calls == []
        assert credentials.refresh_cookies_calls == []
        assert conn.stats().cookie_refreshes == 0
        await anyio.sleep(3600 - 590 + 10)
        assert [at - started for at in credentials.refresh_cookies_calls] == [3600]
        assert [at - started for at in credentials.refresh_token_calls] == [
            600 * n for n in range(1, 7)
        ]
        assert conn.stats().cookie_refreshes == 1


async def test_a_failed_credential_refresh_is_retried_not_skipped() -> None:
    """Issue item 4: after an auth failure the refresh fails once (its endpoint is
    down); the next attempt refreshes again instead of retrying with stale
    credentials, and the connection recovers without reset()."""
    network = MemoryNetwork()
    credentials = TokenCredentials(fail_refreshes=1)
    tokens_seen: list[str] = []

    def authorise(link: ServerLink) -> None:
        tokens_seen.append(link.request_headers.get("Authorization", ""))

    async def accept_fresh_tokens(link: ServerLink) -> None:
        authorise(link)
        await anyio.sleep_forever()

    network.reject(URL, 401)  # the token expired during an outage
    async with connect(
        URL, config=CONFIG, credentials=credentials, transport=MemoryTransport(network)
    ) as conn:
        await conn.wait_for("RECONNECTING")
        network.restore(URL)
        async with network.serve(URL, accept_fresh_tokens):
            await conn.wait_connected()
            assert credentials.refreshes == 2  # the failed one, and the one after it
            assert tokens_seen == ["Bearer 1"]  # never the stale token
            assert "FAILED" not in {dest for (_, _, dest) in conn.stats().transitions}


class RejectedCookies:
    """A provider whose token source refuses the cookies (HTTP 401 at the token endpoint)."""

    def __init__(self) -> None:
        self.calls = 0

    async def handshake_headers(self) -> Mapping[str, Secret]:
        self.calls += 1
        raise CredentialsRejected("token endpoint http://server.test/token: answered HTTP 401")

    async def refresh(self) -> bool:
        self.calls += 1
        raise CredentialsRejected("token endpoint http://server.test/token: answered HTTP 401")

    async def escalate(self) -> bool:
        return False


async def test_credentials_refused_by_their_source_fail_without_hammering_it() -> None:
    """Issue item 5: a token endpoint answering 401 (expired cookies) is not asked again
    and again: FAILED, needing reset, after one attempt."""
    network = MemoryNetwork()
    credentials = RejectedCookies()
    async with (
        network.serve(URL, lambda link: anyio.sleep_forever()),
        connect(
            URL, config=CONFIG, credentials=credentials, transport=MemoryTransport(network)
        ) as conn,
    ):
        await conn.wait_for("FAILED")
        await anyio.sleep(3600)
        assert conn.needs_reset
        assert credentials.calls == 1
        assert conn.failure is not None
        assert conn.failure.failure.error_class == "rejected"


async def test_leaving_from_another_task_leaves_no_stray_cancellation() -> None:
    """Issue item 6: entered through an AsyncExitStack and left from another task:
    one clear error, the connection is closed, and the entering task is not
    cancelled later by a deadline nobody set."""
    network = MemoryNetwork()
    stack = AsyncExitStack()
    async with network.serve(URL, lambda link: anyio.sleep_forever()):
        conn = await stack.enter_async_context(
            connect(URL, config=CONFIG, transport=MemoryTransport(network))
        )
        await conn.wait_connected()
        errors: list[BaseException] = []

        async def leave() -> None:
            try:
                await stack.aclose()
            except UsageError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(leave)
        assert len(errors) == 1
        assert "the task that entered it" in str(errors[0])
        assert conn.state == "CLOSED"
        with anyio.CancelScope() as scope:
            await anyio.sleep(60)  # nothing cancels this task
        assert not scope.cancel_called
        await conn.__aexit__(None, None, None)  # the entering task leaves it properly
