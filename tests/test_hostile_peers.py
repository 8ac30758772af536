"""Hostile peers (docs/security.md): a server that chooses every byte, on the public API.

Each test is one kind of attack of issue 17, states the bound fsm_live keeps, and
records the figure it measured (``figure``: a user property of the test's report).
The server is :mod:`hostile` (raw TCP, real loopback sockets); each test bounds its
real time with ``anyio.fail_after`` and never asserts on a duration.

The tests of kinds 1-3 and of an adapter that raises failed on the engine before
"Runtime v3" (``1163ee1``), which bounded messages by bytes only, let a decoding
exception abort the link and counted trickled bytes as life; each says what it saw.
"""

from __future__ import annotations

import json
import logging
import tracemalloc
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from hostile import Peer, frame, frame_head, hostile_server, switching_protocols
from websockets.frames import Opcode

from fsm_live import (
    Config,
    ConnectionFailed,
    FixedDelay,
    LiveConnection,
    Secret,
    StaticCredentials,
    connect,
)
from fsm_live.core.effects import TransitionRecord
from fsm_live.lwp.protocol import UndecodedItem
from fsm_live.protocols import InvalidJson, JsonProtocol
from fsm_live.protocols.base import Decoded
from fsm_live.transport.base import Message
from fsm_live.transport.redaction import PEER_TEXT_LIMIT

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

#: Compressed timings: a hostile test ends within a few seconds of real time.
CONFIG = Config(
    heartbeat_interval=0.2,
    heartbeat_timeout=0.6,
    open_timeout=5.0,
    close_timeout=0.5,
    stability_window=0.2,
    backoff=FixedDelay(0.05),
    max_failures=3,
)
#: Each test's own deadline (pytest-timeout's is the module's 60 s).
DEADLINE = 30.0
#: websockets' client fails a message of more frames than this with 1009
#: (``websockets.asyncio.messages.MAX_FRAGMENTS``); fsm_live keeps the same bound.
MAX_FRAGMENTS = 4096
#: RFC 6455 section 7.4.1: "message too big".
MESSAGE_TOO_BIG = 1009

Figure = Callable[[str, object], None]


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """Record a measured figure as a user property of the test's report."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))

    return record


class Watch:
    """What a connection delivered and which transitions it took, and a way to wait
    for a condition on them (every message and every transition wakes it)."""

    def __init__(self, conn: LiveConnection) -> None:
        self.conn = conn
        self.messages: list[Any] = []
        self.records: list[TransitionRecord] = []
        self._changed = anyio.Event()
        conn.on_transition(self._transition)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _transition(self, record: TransitionRecord) -> None:
        self.records.append(record)
        self._wake()

    async def take(self) -> None:
        """Take every message as it arrives (run it as a task)."""
        async for message in self.conn:
            self.messages.append(message)
            self._wake()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def left(self, state: str) -> bool:
        """True once a transition left ``state``."""
        return any(record.source == state for record in self.records)

    @property
    def connects(self) -> int:
        return self.conn.stats().connects


async def run_against(
    script: Callable[[Peer], Any],
    until: Callable[[Watch], bool],
    *,
    protocol: Any = "ping",
    config: Config = CONFIG,
    **options: Any,
) -> Watch:
    """Connect to a hostile server running ``script`` and take messages until
    ``until(watch)``; return the watch (the connection is closed by then)."""
    with anyio.fail_after(DEADLINE):
        async with hostile_server(script) as server:
            conn = connect(server.url, protocol=protocol, config=config, **options)
            watch = Watch(conn)
            async with conn, anyio.create_task_group() as task_group:
                task_group.start_soon(watch.take)
                await watch.until(lambda: until(watch))
                task_group.cancel_scope.cancel()
    return watch


# -- 1. counts, not only bytes ------------------------------------------------------------


async def test_1_a_message_of_endless_empty_fragments_is_failed_with_1009(
    figure: Figure,
) -> None:
    """Bound: a message of more than :data:`MAX_FRAGMENTS` frames closes the link with
    1009 (message too big) and is never delivered, however few bytes it has.

    The peer sends a text frame and 4,096 empty continuations (4,097 frames, 8 KiB),
    then the last fragment.  Before (``1163ee1``) the message completed and was delivered: nothing
    but ``max_size`` bytes bounded a message (11 million fragments were held after
    50 s).  Figure: the close code the peer received."""

    codes: list[int | None] = []
    closed = anyio.Event()

    async def script(peer: Peer) -> None:
        await peer.accept()
        if not codes:  # the first link only (1009 is terminal: there is no other)
            await peer.send(
                frame(Opcode.TEXT, b"", fin=False)
                + frame(Opcode.CONT, b"", fin=False) * MAX_FRAGMENTS
                + frame(Opcode.CONT, b"end", fin=True)
            )
        codes.append(await peer.wait_close())
        closed.set()

    watch = await run_against(script, lambda w: bool(w.messages) or w.left("CONNECTED"))
    with anyio.fail_after(DEADLINE):
        await closed.wait()
    figure("close_code", codes[0])
    assert watch.messages == []
    assert codes[0] == MESSAGE_TOO_BIG


async def test_1_pongs_owed_to_a_peer_that_does_not_read_are_bounded(figure: Figure) -> None:
    """Bound: automatic replies (pongs) owed to a peer that reads nothing are at most
    ``MAX_OWED`` (256 KiB) past the write buffer's high mark; then the link is failed
    (lost, close 1008), not left to grow.  The peer, reading nothing, sends up to 64
    MiB of 125-byte pings (131 bytes of pong owed per 127-byte ping); the link must go
    before the flood ends, with the process's Python allocations (tracemalloc) growing
    by less than 8 MiB meanwhile.

    Before, every ping was answered and queued: the pongs grew at the attacker's
    bandwidth (26 MB in 26 s; 66 MB of resident memory for 64 MiB of pings here).
    Figures: the traced memory's peak growth, the ping bytes the peer wrote."""
    batch = frame(Opcode.PING, b"p" * 125) * 512  # 64 KiB
    total = 64 * 1024 * 1024
    sent = 0
    flooded: list[int] = []

    async def script(peer: Peer) -> None:
        nonlocal sent
        await peer.accept()  # and reads nothing more
        if flooded:  # the first link only
            await anyio.sleep_forever()
        with anyio.move_on_after(20):  # until the client hangs up, or all is sent
            while sent < total:
                await peer.send(batch)
                sent += len(batch)
        flooded.append(sent)
        await anyio.sleep_forever()

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        watch = await run_against(script, lambda w: w.left("CONNECTED") or bool(flooded))
        growth = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    figure("traced_growth_bytes", growth)
    figure("ping_bytes_sent", sent)
    assert watch.left("CONNECTED"), "the link outlived a 64 MiB ping flood"
    lost = next(r for r in watch.records if r.source == "CONNECTED")
    figure("lost", lost.reason)
    assert lost.error_class == "lost"
    assert growth < 8 * 1024 * 1024


# -- 2. an undecodable frame is an error value; the link stays up ------------------------


def _after_or_relink(watch: Watch) -> bool:
    return any(m == {"after": 1} or (isinstance(m, dict) and "link" in m) for m in watch.messages)


def _bad_then_good(bad: bytes) -> Callable[[Peer], Any]:
    """A script: on the first link, ``bad`` and ``{"after": 1}`` in one write (one read
    for the client); on any later link (the first was lost), ``{"link": n}``."""
    links = 0

    async def script(peer: Peer) -> None:
        nonlocal links
        links += 1
        await peer.accept()
        if links == 1:
            await peer.send(frame(Opcode.TEXT, bad) + frame(Opcode.TEXT, b'{"after": 1}'))
        else:
            await peer.send(frame(Opcode.TEXT, json.dumps({"link": links}).encode()))
        await peer.wait_close()

    return script


async def test_2_json_nested_too_deeply_is_an_invalid_json_value(figure: Figure) -> None:
    """Bound: any frame is decoded without raising; JSON nested deeper than Python's
    recursion limit is delivered as :class:`InvalidJson`, and the next frame of the
    same read is delivered too, on the same link.

    Before: 1,100 levels (2.2 KB) raised RecursionError out of the adapter, the TCP
    link was aborted and both frames were lost.  Figure: links used (1)."""
    depth = 100_000
    watch = await run_against(
        _bad_then_good(b"[" * depth + b"]" * depth), _after_or_relink, protocol="json"
    )
    figure("links", watch.connects)
    assert len(watch.messages) == 2
    assert isinstance(watch.messages[0], InvalidJson)
    assert "deep" in watch.messages[0].error
    assert watch.messages[1] == {"after": 1}
    assert watch.connects == 1


class _Credentials:
    """lwp credentials for a test: a fixed token and device id."""

    device_id = "device-1"

    async def access_token(self) -> Secret:
        return Secret("token-1")

    async def handshake_headers(self) -> Mapping[str, Secret]:
        return {}

    async def refresh(self) -> bool:
        return True

    async def escalate(self) -> bool:
        return False


@pytest.mark.parametrize(
    "bad",
    [
        {"lwp": ["/s/sync"], "headers": {"mid": "1 0"}},  # unhashable path: TypeError before
        {"lwp": {"a": 1}, "headers": {"mid": "2 0"}},
        {"lwp": 7, "headers": {"mid": "3 0"}},
        {"lwp": "/s/sync", "headers": {"mid": "4 0"}, "body": {"syncPushPackage": {"data": 5}}},
    ],
    ids=["list-path", "dict-path", "int-path", "data-not-a-list"],
)
async def test_2_lwp_fields_of_the_wrong_type_are_error_values(bad: dict[str, Any]) -> None:
    """Bound: an lwp frame whose fields have the wrong types (a path that is not a
    string, ...) is delivered as an :class:`UndecodedItem` or as the object it is;
    the frames after it are delivered on the same link."""
    links = 0

    async def script(peer: Peer) -> None:
        nonlocal links
        links += 1
        await peer.register_lwp()
        push = {"lwp": "/push", "headers": {"mid": f"after{links} 0"}, "body": {"after": links}}
        frames = frame(Opcode.TEXT, json.dumps(push).encode())
        if links == 1:
            frames = frame(Opcode.TEXT, json.dumps(bad).encode()) + frames
        await peer.send(frames)
        await peer.wait_close()

    def pushed(watch: Watch) -> bool:
        return any(isinstance(m, dict) and m.get("lwp") == "/push" for m in watch.messages)

    watch = await run_against(
        script, pushed, protocol="lwp", credentials=_Credentials(), config=CONFIG
    )
    assert watch.connects == 1
    assert watch.messages[-1]["body"] == {"after": 1}
    assert len(watch.messages) == 2


async def test_2_lwp_nested_too_deeply_is_an_undecoded_item() -> None:
    depth = 100_000
    links = 0

    async def script(peer: Peer) -> None:
        nonlocal links
        links += 1
        await peer.register_lwp()
        push = {"lwp": "/push", "headers": {"mid": f"after{links} 0"}, "body": {"after": links}}
        frames = frame(Opcode.TEXT, json.dumps(push).encode())
        if links == 1:
            frames = frame(Opcode.TEXT, b"[" * depth + b"]" * depth) + frames
        await peer.send(frames)
        await peer.wait_close()

    def pushed(watch: Watch) -> bool:
        return any(isinstance(m, dict) and m.get("lwp") == "/push" for m in watch.messages)

    watch = await run_against(script, pushed, protocol="lwp", credentials=_Credentials())
    assert isinstance(watch.messages[0], UndecodedItem)
    assert watch.messages[1]["body"] == {"after": 1}
    assert watch.connects == 1


class _Fragile(JsonProtocol):
    """A user's adapter with a bug: it raises on a frame it did not expect."""

    name = "fragile"

    def decode(self, frame: Message) -> list[Decoded]:
        if frame == "boom":
            raise KeyError("boom")
        return super().decode(frame)

    def decode_simple(self, frame: Message) -> tuple[Any, Hashable | None]:
        if frame == "boom":
            raise KeyError("boom")
        return super().decode_simple(frame)


async def test_2_an_adapter_that_raises_delivers_an_error_value_and_keeps_the_link() -> None:
    """Bound: whatever an adapter's ``decode`` raises, the frame is delivered as an
    error value, the link stays up (no reconnect) and the frames after it, in the
    same read, are delivered.  Before, the exception escaped into the link: the TCP
    link was aborted with no close frame and ``{"after": 1}`` was lost."""
    watch = await run_against(_bad_then_good(b"boom"), _after_or_relink, protocol=_Fragile())
    assert watch.connects == 1
    assert len(watch.messages) == 2
    assert watch.messages[1] == {"after": 1}
    assert "KeyError" in repr(watch.messages[0])


# -- 3. a frame that never completes is no proof of life ----------------------------------


async def test_3_a_frame_trickled_forever_does_not_keep_the_link_alive(figure: Figure) -> None:
    """Bound (docs/architecture.md rule 8): a link on which no frame completes for
    ``heartbeat_timeout`` is lost, whatever bytes trickle in.

    The peer announces a 1,000-byte frame and sends one byte of it every 50 ms for
    ten heartbeat timeouts (6 s), answering nothing.  Before, every byte counted as
    life: the link stayed CONNECTED for the whole trickle, its heartbeats unanswered.
    Figure: seconds from the connection to the link declared lost (expected: about
    ``heartbeat_timeout``, 0.6 s)."""
    every = 0.05
    count = round(10 * CONFIG.heartbeat_timeout / every)
    trickled: list[float] = []

    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.send(frame_head(Opcode.TEXT, 1000))
        await peer.trickle(b"x" * count, every=every)
        trickled.append(anyio.current_time())
        await anyio.sleep_forever()

    watch = await run_against(script, lambda w: w.left("CONNECTED"))
    opened = next(r.at for r in watch.records if r.dest == "CONNECTED")
    lost = next(r for r in watch.records if r.source == "CONNECTED")
    figure("seconds_to_lost", lost.at - opened)
    assert not trickled, "the link outlived a trickle of ten heartbeat timeouts"
    assert "heartbeat" in lost.reason


# -- 4. text chosen by the peer is cut ----------------------------------------------------


async def test_4_a_refusal_with_a_huge_code_is_cut_everywhere(
    figure: Figure, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Bound: text the peer chose reaches an error, a log line or a trace cut to
    :data:`PEER_TEXT_LIMIT` characters (with control characters escaped).

    lwp registration refused with a 500,000-character ``code``: before, a
    505,000-character exception, two ~505 KB log lines and 1 MB of trace per
    refused attempt.  Figures: the longest log line, the trace's bytes, the
    failure's length."""
    code = "\x1b[2J" + "A" * 500_000

    async def script(peer: Peer) -> None:
        await peer.register_lwp(code)
        await peer.wait_close()

    trace = tmp_path / "trace.jsonl"
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(DEADLINE):
        async with hostile_server(script) as server:
            conn = connect(
                server.url, protocol="lwp", credentials=_Credentials(), config=CONFIG, trace=trace
            )
            async with conn:
                with pytest.raises(ConnectionFailed) as failed:
                    await conn.wait_for("CLOSED")
                last_error = conn.stats().last_error or ""
    message = str(failed.value)
    lines = [record.getMessage() for record in caplog.records]
    longest = max(len(line) for line in lines)
    figure("failure_chars", len(message))
    figure("longest_log_line", longest)
    figure("trace_bytes", trace.stat().st_size)
    for text in (message, last_error, *lines, trace.read_text()):
        assert "A" * (PEER_TEXT_LIMIT + 1) not in text
        assert "\x1b" not in text
    assert "registration rejected" in message
    assert len(message) < 2 * PEER_TEXT_LIMIT
    assert longest < 4 * PEER_TEXT_LIMIT
    assert trace.stat().st_size < 16 * 1024


@pytest.mark.parametrize("status", [101, 403])
async def test_4_a_reason_phrase_echoing_cookies_is_not_logged(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """websockets logs the answer's status line at DEBUG ("< HTTP/1.1 %d %s"): the
    reason phrase is the peer's text, and a server may echo the request's Cookie in
    it.  It is redacted like header values; the status code stays."""
    cookie = "sid=s3cr3t-cookie-value"

    async def script(peer: Peer) -> None:
        request = await peer.read_request()
        echoed = request.headers.get("Cookie", "")
        if status == 101:
            await peer.send(switching_protocols(request, reason=f"ok {echoed}"))
            await peer.wait_close()
        else:
            await peer.send(
                f"HTTP/1.1 403 Forbidden {echoed}\r\nContent-Length: 0\r\n\r\n".encode()
            )

    caplog.set_level(logging.DEBUG)
    credentials = StaticCredentials({"Cookie": Secret(cookie)})

    def done(watch: Watch) -> bool:
        return watch.connects >= 1 if status == 101 else watch.left("CONNECTING")

    await run_against(script, done, credentials=credentials)
    status_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("< HTTP")]
    assert status_lines, "websockets logged no status line at DEBUG"
    assert all(line.startswith(f"< HTTP/1.1 {status}") for line in status_lines)
    assert "s3cr3t" not in caplog.text
