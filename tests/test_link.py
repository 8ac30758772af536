"""fsm_live._runtime.link: one WebSocket link, driven by hand with a fake byte link.

No event loop and no socket: the peer is websockets' own Sans-I/O ``ServerProtocol``
fed the bytes the link writes, and the test hands its answers back.  What is
checked: the handshake, messages assembled and decoded, evidence of life only from
complete frames, the bounds of rule 9 (fragments per message, automatic replies
owed to a peer that reads nothing, invalid UTF-8), write accounting, the close.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from fsm_live._runtime.link import MAX_FRAGMENTS, MAX_OWED, Link, Phase
from fsm_live.errors import TransportError


class FakeIO:
    """A byte link: what was written, and the controls the link uses."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0  # bytes "not yet taken by the OS"
        self.aborted = self.closed = self.eof = False
        self.reading = True
        self.pending = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def input_pending(self) -> bool:
        return self.pending


class Owner:
    """What the link reports, recorded."""

    def __init__(self) -> None:
        self.responses = 0
        self.messages: list[str | bytes] = []
        self.pongs: list[bytes] = []
        self.failures: list[TransportError] = []

    def link_made(self, link: Link, io: Any) -> None: ...
    def link_data(self, link: Link, data: bytes) -> None: ...
    def link_eof(self, link: Link) -> None: ...
    def link_lost(self, link: Link, exc: BaseException | None) -> None: ...
    def link_writing(self, link: Link, paused: bool) -> None: ...

    def link_response(self, link: Link, now: float) -> None:
        self.responses += 1

    def link_message(self, link: Link, message: str | bytes, now: float) -> None:
        self.messages.append(message)

    def link_pong(self, link: Link, payload: bytes, now: float) -> None:
        self.pongs.append(payload)

    def link_failed(self, link: Link, error: TransportError) -> None:
        self.failures.append(error)


class Peer:
    """A server end speaking to the link through the fake byte link."""

    def __init__(self, link: Link, io: FakeIO) -> None:
        self.link, self.io = link, io
        self.protocol = ServerProtocol()
        self.read = 0  # writes of the link already handed to the server
        self.requests: list[Request] = []
        self.frames: list[Frame] = []

    def take(self) -> None:
        """Hand the server what the link wrote since."""
        for data in self.io.writes[self.read :]:
            self.protocol.receive_data(data)
        self.read = len(self.io.writes)
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                self.requests.append(event)
                self.protocol.send_response(self.protocol.accept(event))
            else:
                self.frames.append(event)

    def answer(self, now: float = 1.0) -> None:
        """Hand the link what the server wrote since."""
        for data in self.protocol.data_to_send():
            if data:
                self.link.receive(data, now)


def opened(now: float = 0.0) -> tuple[Link, FakeIO, Owner, Peer]:
    owner, io = Owner(), FakeIO()
    link = Link(owner, 7)
    link.headers = {"Cookie": "a=b"}
    link.made(
        io,
        parse_uri("ws://server.test/feed"),
        extensions=None,
        max_size=1 << 20,
        user_agent="test-agent",
        now=now,
    )
    peer = Peer(link, io)
    peer.take()
    peer.answer()
    return link, io, owner, peer


def test_the_handshake_carries_the_headers_and_opens() -> None:
    link, _, owner, peer = opened()
    [request] = peer.requests
    assert request.headers["Cookie"] == "a=b"
    assert request.headers["User-Agent"] == "test-agent"
    assert (owner.responses, link.phase) == (1, Phase.REGISTERING)
    assert link.id == 7


def test_messages_are_assembled_and_decoded() -> None:
    _link, _, owner, peer = opened()
    peer.protocol.send_text("héllo".encode())
    peer.protocol.send_binary(b"\x00\x01")
    peer.protocol.send_text(b"one ", fin=False)
    peer.protocol.send_continuation(b"two ", fin=False)
    peer.protocol.send_continuation(b"three", fin=True)
    peer.answer()
    assert owner.messages == ["héllo", b"\x00\x01", "one two three"]


def test_only_a_complete_frame_is_evidence_of_life() -> None:
    link, _, owner, peer = opened(now=0.0)
    peer.protocol.send_text(b"x" * 1000)
    [data] = [d for d in peer.protocol.data_to_send() if d]
    link.receive(data[:500], now=5.0)  # half a frame
    assert link.last_frame_at == 0.0
    link.receive(data[500:], now=6.0)
    assert link.last_frame_at == 6.0
    peer.protocol.send_pong(b"any payload")  # a pong, whatever it carries
    peer.answer(now=9.0)
    assert (link.last_frame_at, owner.pongs) == (9.0, [b"any payload"])


def test_a_message_of_too_many_fragments_fails_with_1009() -> None:
    _link, _, owner, peer = opened()
    peer.protocol.send_text(b"", fin=False)
    for _ in range(MAX_FRAGMENTS + 10):
        peer.protocol.send_continuation(b"", fin=False)
    peer.answer()
    [failure] = owner.failures
    assert failure.close_code == 1009
    assert owner.messages == []
    peer.take()
    close = [f for f in peer.frames if f.opcode is Opcode.CLOSE]
    assert close
    assert int.from_bytes(close[0].data[:2], "big") == 1009


def test_a_message_just_under_the_fragment_bound_is_delivered() -> None:
    _link, _, owner, peer = opened()
    peer.protocol.send_text(b"a", fin=False)
    for _ in range(MAX_FRAGMENTS - 2):
        peer.protocol.send_continuation(b"a", fin=False)
    peer.protocol.send_continuation(b"a", fin=True)
    peer.answer()
    assert owner.messages == ["a" * MAX_FRAGMENTS]
    assert owner.failures == []


def test_invalid_utf8_fails_with_1007() -> None:
    _link, _, owner, peer = opened()
    peer.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe"))
    peer.answer()
    assert [f.close_code for f in owner.failures] == [1007]


def test_replies_owed_to_a_peer_that_reads_nothing_are_bounded() -> None:
    """A peer that pings and never reads: the pongs pile up in our write buffer; past
    MAX_OWED bytes the link is failed (lost: backoff), not kept growing."""
    link, _io, owner, peer = opened()
    link.writing(True)  # the write buffer is above its high mark: the peer reads nothing
    payload = b"p" * 125
    pong = len(payload) + 6  # a masked pong frame: header and mask
    pings = 0
    while not owner.failures and pings * pong < 10 * MAX_OWED:
        peer.protocol.send_ping(payload)
        peer.answer()
        pings += 1
    [failure] = owner.failures
    assert failure.close_code == 1006  # classed lost
    assert MAX_OWED < pings * pong <= MAX_OWED + pong
    link.writing(False)
    assert link.owed == 0


def test_written_and_confirmed_bytes_for_the_ledger() -> None:
    link, io, _, _peer = opened()
    link.phase = Phase.OPEN
    before = link.written
    end = link.send("hello")
    assert end == link.written > before
    assert link.confirmed == end  # the OS took it all
    io.buffered = 3
    assert link.confirmed == end - 3


def test_a_send_before_the_websocket_is_open_writes_nothing() -> None:
    owner, io = Owner(), FakeIO()
    link = Link(owner, 1)
    assert link.send("early") == 0
    assert io.writes == []


def test_closing_an_open_link_sends_a_close_frame_and_still_reports_frames() -> None:
    link, io, owner, peer = opened()
    link.phase = Phase.OPEN
    io.reading = False  # the application was behind
    peer.protocol.send_text(b"in flight")  # sent before the peer sees our close
    assert link.close(1000, now=1.0, close_timeout=5.0)
    assert (link.phase, io.reading) == (Phase.CLOSING, True)  # read the peer's close
    peer.take()
    assert [f.opcode for f in peer.frames][-1] is Opcode.CLOSE
    peer.answer()
    assert owner.messages == ["in flight"]  # rule 10: delivered like any other


def test_closing_during_the_handshake_aborts() -> None:
    owner, io = Owner(), FakeIO()
    link = Link(owner, 1)
    link.made(io, parse_uri("ws://x.test/"), extensions=None, max_size=None, user_agent=None, now=0)
    assert not link.close(1000, now=1.0, close_timeout=5.0)
    assert io.aborted


@pytest.mark.parametrize(
    ("phase", "exc", "kind", "code"),
    [
        (Phase.HANDSHAKE, ConnectionResetError(), "reset", None),
        (Phase.OPEN, ConnectionResetError(), None, 1006),
        (Phase.OPEN, None, None, 1006),
    ],
)
def test_a_lost_byte_link_is_reported_once_with_what_it_means(
    phase: int, exc: BaseException | None, kind: str | None, code: int | None
) -> None:
    link, _, owner, _ = opened()
    link.phase = phase
    link.lost(exc)
    link.lost(exc)
    [failure] = owner.failures
    assert (failure.kind, failure.close_code) == (kind, code)
    assert link.phase == Phase.CLOSED


def test_bytes_pending_are_asked_of_the_byte_link() -> None:
    link, io, _, _ = opened()
    assert not link.input_pending()
    io.pending = True
    assert link.input_pending()
