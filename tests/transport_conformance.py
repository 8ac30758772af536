"""The transport conformance suite: what every Transport must do, on every backend.

Not collected by itself.  A test module subclasses :class:`TransportConformance` in a
class named ``Test...`` and provides a ``harness`` fixture (a :class:`Harness`); every
test here then runs against that transport, on each ``anyio_backend``.

A harness stands up servers the way its transport can reach them, and hands each
connection to a backend-neutral :class:`ServerSide` handler.  Handlers only record
what they see; the assertions are made in the test body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import anyio
import pytest

from fsm_live.errors import HandshakeRejected, TransportError
from fsm_live.transport.base import ConnectOptions, Message, Transport

# Every test finishes well within this; a hang fails fast instead of at pytest's 60 s.
TEST_DEADLINE = 5.0
# Short enough to keep each test < 2 s, long enough for loopback on a busy CI box.
OPEN_TIMEOUT = 0.2
CLOSE_TIMEOUT = 0.2
# Slack for scheduling on top of a timeout that must fire.
SLACK = 0.8


class ServerSide(Protocol):
    """The server's end of one connection, whatever the transport."""

    @property
    def request_headers(self) -> Mapping[str, str]: ...

    async def send(self, message: Message) -> None: ...

    async def receive(self) -> Message: ...

    async def close(self, code: int, reason: str = "") -> None: ...

    async def drop(self) -> None:
        """End the TCP connection without a close frame."""
        ...

    async def wait_closed(self) -> int:
        """Wait for the link to close; return the close code the server saw."""
        ...


Handler = Callable[[ServerSide], Awaitable[None]]


class Harness(Protocol):
    """Servers for one transport.  Each context manager yields the URL to dial."""

    transport: Transport

    def serving(self, handler: Handler) -> AbstractAsyncContextManager[str]:
        """A server running ``handler`` per connection; the handler ending (or raising
        because the link closed) is fine.  Leaving closes what is still open."""
        ...

    def rejecting(
        self, status: int, headers: Mapping[str, str]
    ) -> AbstractAsyncContextManager[str]:
        """A server answering every handshake with HTTP ``status`` and ``headers``."""
        ...

    def refusing(self) -> AbstractAsyncContextManager[str]:
        """A URL where nothing listens: connecting is refused."""
        ...

    def stalling(self) -> AbstractAsyncContextManager[str]:
        """A server that accepts the connection and never answers the handshake."""
        ...

    def silent(self) -> AbstractAsyncContextManager[str]:
        """A server that completes the handshake, then never answers anything
        (no pong, no close frame): a half-open connection."""
        ...


def options(**changes: object) -> ConnectOptions:
    """Short timeouts for tests; the caller overrides what it tests."""
    fields: dict[str, object] = {"open_timeout": 2.0, "close_timeout": CLOSE_TIMEOUT}
    fields.update(changes)
    return ConnectOptions(**fields)  # type: ignore[arg-type]


async def echo(side: ServerSide) -> None:
    while True:
        await side.send(await side.receive())


class TransportConformance:
    """The suite; see the module docstring."""

    @pytest.mark.anyio
    async def test_text_and_bytes_round_trip_in_order(self, harness: Harness) -> None:
        messages: list[Message] = ["hello", b"\x00\x01binary", "", b"", "é" * 100, b"x" * 4000]
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(echo) as url, \
                    harness.transport.connect(url, options()) as link:
                for message in messages:
                    await link.send(message)
                received = [await link.receive() for _ in messages]
        assert received == messages
        assert [type(m) for m in received] == [type(m) for m in messages]

    @pytest.mark.anyio
    @pytest.mark.parametrize("code", [1000, 1001, 1008, 4500])
    async def test_server_close_surfaces_its_code(self, harness: Harness, code: int) -> None:
        async def greet_and_close(side: ServerSide) -> None:
            await side.send("last words")
            await side.close(code, "bye")

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(greet_and_close) as url, \
                    harness.transport.connect(url, options()) as link:
                assert await link.receive() == "last words"
                with pytest.raises(TransportError) as info:
                    await link.receive()
                assert info.value.close_code == code
                assert info.value.kind is None
                assert str(code) in info.value.reason
                assert link.close_code == code
                # Every later call raises the same facts.
                with pytest.raises(TransportError) as again:
                    await link.send("too late")
                assert again.value.close_code == code
        assert link.close_code == code  # leaving changes nothing

    @pytest.mark.anyio
    async def test_abrupt_drop_is_1006(self, harness: Harness) -> None:
        async def drop(side: ServerSide) -> None:
            await side.drop()

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(drop) as url, \
                    harness.transport.connect(url, options()) as link:
                with pytest.raises(TransportError) as info:
                    await link.receive()
                assert info.value.close_code == 1006
                assert link.close_code == 1006
                with pytest.raises(TransportError) as ping_info:
                    await link.ping()
                assert ping_info.value.close_code == 1006
        assert link.close_code == 1006

    @pytest.mark.anyio
    async def test_handshake_rejected_403(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.rejecting(403, {}) as url:
                with pytest.raises(HandshakeRejected) as info:
                    async with harness.transport.connect(url, options()):
                        pytest.fail("connected despite the 403")
        assert info.value.http_status == 403
        assert info.value.retry_after is None
        assert info.value.close_code is None
        assert info.value.reason == "HTTP 403 at handshake"

    @pytest.mark.anyio
    async def test_handshake_rejected_503_with_retry_after(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.rejecting(503, {"Retry-After": "7"}) as url:
                with pytest.raises(HandshakeRejected) as info:
                    async with harness.transport.connect(url, options()):
                        pytest.fail("connected despite the 503")
        assert info.value.http_status == 503
        assert info.value.retry_after == 7.0

    @pytest.mark.anyio
    async def test_refused(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.refusing() as url:
                with pytest.raises(TransportError) as info:
                    async with harness.transport.connect(url, options()):
                        pytest.fail("connected to nothing")
        assert info.value.kind == "refused"
        assert info.value.reason == "connection refused"

    @pytest.mark.anyio
    async def test_bad_uri(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE), pytest.raises(TransportError) as info:
            async with harness.transport.connect("http://user:secret@example.com/", options()):
                pytest.fail("connected to a non-WebSocket URI")
        assert info.value.kind == "bad_uri"
        assert "secret" not in info.value.reason

    @pytest.mark.anyio
    async def test_stalled_handshake_times_out_at_open_timeout(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.stalling() as url:
                start = anyio.current_time()
                with pytest.raises(TransportError) as info:
                    async with harness.transport.connect(url, options(open_timeout=OPEN_TIMEOUT)):
                        pytest.fail("the handshake completed")
                elapsed = anyio.current_time() - start
        assert info.value.kind == "timeout"
        assert OPEN_TIMEOUT * 0.9 <= elapsed < OPEN_TIMEOUT + SLACK

    @pytest.mark.anyio
    async def test_ping_returns_once_the_pong_arrives(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(echo) as url, \
                    harness.transport.connect(url, options()) as link:
                await link.ping()
                await link.ping()
                await link.send("still fine")
                assert await link.receive() == "still fine"

    @pytest.mark.anyio
    async def test_unanswered_ping_and_close_are_bounded(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.silent() as url, \
                    harness.transport.connect(url, options()) as link:
                with anyio.move_on_after(0.1) as waiting:
                    await link.ping()
                assert waiting.cancelled_caught, "ping returned without a pong"
                start = anyio.current_time()
                await link.close()
                elapsed = anyio.current_time() - start
                assert link.close_code == 1006
                with pytest.raises(TransportError) as info:
                    await link.receive()
                assert info.value.close_code == 1006
        assert CLOSE_TIMEOUT * 0.9 <= elapsed < CLOSE_TIMEOUT + SLACK

    @pytest.mark.anyio
    async def test_leaving_the_attempt_closes_within_close_timeout(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.silent() as url:
                async with harness.transport.connect(url, options()):
                    start = anyio.current_time()
                elapsed = anyio.current_time() - start
        assert elapsed < CLOSE_TIMEOUT + SLACK

    @pytest.mark.anyio
    async def test_client_close_is_seen_by_the_server(self, harness: Harness) -> None:
        seen: list[int] = []
        done = anyio.Event()

        async def watch(side: ServerSide) -> None:
            try:
                seen.append(await side.wait_closed())
            finally:
                done.set()

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(watch) as url:
                async with harness.transport.connect(url, options()) as link:
                    assert link.close_code is None
                    await link.close(4001, "leaving")
                    assert link.close_code == 4001
                    await link.close()  # idempotent
                    with pytest.raises(TransportError) as info:
                        await link.send("after close")
                    assert info.value.close_code == 4001
                await done.wait()
        assert seen == [4001]

    @pytest.mark.anyio
    async def test_close_rejects_codes_that_cannot_be_sent(self, harness: Harness) -> None:
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(echo) as url, \
                    harness.transport.connect(url, options()) as link:
                with pytest.raises(ValueError, match="1006"):
                    await link.close(1006)
                await link.ping()  # still open
        assert link.close_code == 1000

    @pytest.mark.anyio
    async def test_headers_are_sent(self, harness: Harness) -> None:
        seen: list[Mapping[str, str]] = []

        async def record(side: ServerSide) -> None:
            seen.append(side.request_headers)
            await side.send("recorded")

        opts = options(headers={"Cookie": "session=s3cr3t"}, user_agent="fsm_live-test")
        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(record) as url, \
                    harness.transport.connect(url, opts) as link:
                assert await link.receive() == "recorded"
        [headers] = seen
        assert headers["Cookie"] == "session=s3cr3t"
        assert headers["User-Agent"] == "fsm_live-test"

    @pytest.mark.anyio
    async def test_message_over_max_size_is_1009(self, harness: Harness) -> None:
        async def flood(side: ServerSide) -> None:
            await side.send("small")
            await side.send(b"x" * 2048)
            await side.wait_closed()

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(flood) as url, \
                    harness.transport.connect(url, options(max_size=1024)) as link:
                assert await link.receive() == "small"
                with pytest.raises(TransportError) as info:
                    await link.receive()
                assert info.value.close_code == 1009
                assert link.close_code == 1009
        assert link.close_code == 1009

    @pytest.mark.anyio
    async def test_errors_in_the_body_pass_through(self, harness: Harness) -> None:
        class Boom(Exception):
            pass

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(echo) as url:
                with pytest.raises(Boom):
                    async with harness.transport.connect(url, options()):
                        raise Boom

    @pytest.mark.anyio
    async def test_cancelled_body_still_closes(self, harness: Harness) -> None:
        seen: list[int] = []
        done = anyio.Event()

        async def watch(side: ServerSide) -> None:
            try:
                seen.append(await side.wait_closed())
            finally:
                done.set()

        with anyio.fail_after(TEST_DEADLINE):
            async with harness.serving(watch) as url:
                with anyio.move_on_after(0.05):
                    async with harness.transport.connect(url, options()) as link:
                        await link.receive()  # nothing comes: cancelled here
                await done.wait()
        assert seen == [1000], seen
