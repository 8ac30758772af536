"""One WebSocket link: a byte link, websockets' Sans-I/O ``ClientProtocol`` over it,
and the bounds and accounts the engine needs of it.  No event loop here.

The engine makes a :class:`Link` per dial and drives it:

* **opening**: :meth:`Link.made` sends the opening handshake (headers given);
  the response moves the link to REGISTERING (the protocol's registration, if
  any) and the engine to OPEN once registered;
* **inbound**: :meth:`Link.receive` feeds bytes to the protocol, writes what it
  must answer (pongs, a close), and reports each complete message, pong and
  close to the :class:`LinkOwner`; any complete frame is evidence of life
  (``last_frame_at``: docs/architecture.md, rule 8), the bytes of a frame that
  never completes are not;
* **bounds** (rule 9): a message of more than :data:`MAX_FRAGMENTS` frames fails
  the link with 1009, as websockets' own client does (its Sans-I/O layer bounds
  bytes only); automatic replies (pongs, the protocol's acks) owed to a peer
  that does not read are bounded by :data:`MAX_OWED` bytes; text is decoded
  here, and invalid UTF-8 fails the link with 1007 (RFC 6455 section 8.1);
* **outbound**: :meth:`Link.send` encodes a frame and returns the link's byte
  count after it (``written``); :attr:`Link.confirmed` is how many of those
  bytes left the process (the delivery ledger confirms frames up to it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from websockets.client import ClientProtocol
from websockets.extensions.base import ClientExtensionFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import CLOSED, OPEN
from websockets.uri import WebSocketURI

from fsm_live._runtime.links import LinkIO
from fsm_live.errors import TransportError
from fsm_live.protocols.base import Registration
from fsm_live.transport import errors
from fsm_live.transport.base import Message
from fsm_live.transport.redaction import redacting_logger

__all__ = ("MAX_FRAGMENTS", "MAX_OWED", "Link", "LinkOwner", "Phase")

#: Frames one message may take (websockets' asyncio client: 4,096, then close 1009).
MAX_FRAGMENTS: Final = 4096
#: Bytes of automatic replies (pongs, protocol acks) written while the peer does not
#: read our writes (the write buffer above its high mark), before the link is failed.
MAX_OWED: Final = 256 * 1024
#: Close codes the client sends (RFC 6455 section 7.4.1).
MESSAGE_TOO_BIG: Final = 1009
INVALID_DATA: Final = 1007
POLICY_VIOLATION: Final = 1008

_WEBSOCKETS_LOGGER = redacting_logger("websockets.client")
#: What a link starts with, shared: most links never have either (never mutated).
_NO_HEADERS: Final[Mapping[str, str]] = {}
_NONE_EARLY: Final[list[Message]] = []


class Phase:
    """Where a link is in its life (plain ints: compared on the hot path)."""

    DIALING = 0  # the byte link is being opened
    HANDSHAKE = 1  # the WebSocket opening handshake
    REGISTERING = 2  # the protocol's registration (lwp's /reg)
    OPEN = 3  # registered: the connection is up on it
    CLOSING = 4  # released by the lifecycle, closing (bounded by close_timeout)
    CLOSED = 5


class LinkOwner(Protocol):
    """What a link reports (the engine): its byte link's events, handed on with the
    link, and what the WebSocket on it says."""

    def link_made(self, link: Link, io: LinkIO) -> None:
        """The byte link is open."""
        ...

    def link_data(self, link: Link, data: bytes) -> None:
        """Bytes arrived (the owner calls :meth:`Link.receive`)."""
        ...

    def link_eof(self, link: Link) -> None:
        """The peer half-closed the byte link (the owner calls :meth:`Link.eof`)."""
        ...

    def link_lost(self, link: Link, exc: BaseException | None) -> None:
        """The byte link is gone (the owner calls :meth:`Link.lost`)."""
        ...

    def link_writing(self, link: Link, paused: bool) -> None:
        """The write buffer crossed a mark (the owner calls :meth:`Link.writing`)."""
        ...

    def link_response(self, link: Link, now: float) -> None:
        """The opening handshake succeeded (the link is REGISTERING)."""
        ...

    def link_message(self, link: Link, message: Message, now: float) -> None:
        """A whole data message arrived (text decoded)."""
        ...

    def link_pong(self, link: Link, payload: bytes, now: float) -> None:
        """A pong arrived."""
        ...

    def link_failed(self, link: Link, error: TransportError) -> None:
        """The link failed or ended: a close frame, a protocol error, the end of its
        stream, a broken byte link.  Called at most once per link."""
        ...


class Link:
    """One WebSocket link.  ``id`` is the lifecycle's link id (the generation of the
    state that dialled it)."""

    __slots__ = (
        "_fragments",
        "_fragments_text",
        "_owner",
        "close_deadline",
        "early",
        "failed",
        "guard",
        "headers",
        "id",
        "io",
        "last_frame_at",
        "owed",
        "phase",
        "pings",
        "protocol",
        "registration",
        "write_paused",
        "written",
    )

    def __init__(self, owner: LinkOwner, link_id: int) -> None:
        self._owner = owner
        self.id = link_id
        self.phase = Phase.DIALING
        self.io: LinkIO | None = None
        #: Asked before every write (a cluster's ownership check); False: nothing is
        #: written (the engine aborts the link).
        self.guard: Callable[[], bool] | None = None
        self.protocol: ClientProtocol | None = None
        self.headers: Mapping[str, str] = _NO_HEADERS
        self.registration: Registration | None = None
        #: Messages that arrived before the application reads (registration, reader);
        #: a list once there is one.
        self.early: list[Message] = _NONE_EARLY
        self._fragments: list[bytes] | None = None  # a fragmented message so far
        self._fragments_text = False
        #: When the last complete frame arrived (evidence of life).
        self.last_frame_at = -math.inf
        #: Pings sent on this link (their payloads are the count: unique here).
        self.pings = 0
        #: Bytes handed to the byte link.
        self.written = 0
        #: Bytes of automatic replies written while the peer does not read.
        self.owed = 0
        self.write_paused = False
        self.failed = False
        self.close_deadline = math.inf

    def __repr__(self) -> str:
        return f"<Link {self.id} phase={self.phase}>"

    # -- LinkEvents: the byte link reports here, the owner decides ----------------------------

    def link_made(self, io: LinkIO) -> None:
        self._owner.link_made(self, io)

    def link_data(self, data: bytes) -> None:
        self._owner.link_data(self, data)

    def link_eof(self) -> None:
        self._owner.link_eof(self)

    def link_lost(self, exc: BaseException | None) -> None:
        self._owner.link_lost(self, exc)

    def writing_paused(self, paused: bool) -> None:
        self._owner.link_writing(self, paused)

    # -- opening -----------------------------------------------------------------------------

    def made(
        self,
        io: LinkIO,
        wsuri: WebSocketURI,
        *,
        extensions: Sequence[ClientExtensionFactory] | None,
        max_size: int | None,
        user_agent: str | None,
        now: float,
    ) -> None:
        """The byte link is open: send the opening handshake with :attr:`headers`."""
        self.io = io
        protocol = self.protocol = ClientProtocol(
            wsuri, extensions=extensions, max_size=max_size, logger=_WEBSOCKETS_LOGGER
        )
        request = protocol.connect()
        for name, value in self.headers.items():
            request.headers[name] = value
        if user_agent is not None and "User-Agent" not in request.headers:
            request.headers["User-Agent"] = user_agent
        protocol.send_request(request)
        self.phase = Phase.HANDSHAKE
        self.last_frame_at = now
        self.flush()

    # -- inbound -------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """Bytes arrived: parse them, answer what must be answered, report what came."""
        protocol = self.protocol
        if protocol is None:
            return
        protocol.receive_data(data)
        self.flush()
        for event in protocol.events_received():
            if self.failed:
                break
            if isinstance(event, Frame):
                self.last_frame_at = now
                self._frame(event, now)
            elif isinstance(event, Response):
                self._response(now)
        if self.failed:
            return
        if self.phase == Phase.HANDSHAKE and protocol.handshake_exc is not None:
            # An answer it cannot parse leaves no event, only handshake_exc.
            self.fail(errors.translate(protocol.handshake_exc))
        elif self.phase != Phase.HANDSHAKE and protocol.parser_exc is not None:
            # websockets failed the link by itself (1009 too big, 1002 protocol
            # error): its close frame is sent and it reads nothing more.
            sent = protocol.close_sent
            self.fail(errors.closed(sent.code if sent is not None else errors.ABNORMAL_CLOSURE))
        elif self.owed > MAX_OWED:
            # The peer sends and reads nothing: our answers pile up.  Lost, not its
            # fault alone to judge (backoff, as for any link that stopped working).
            self.fail(
                errors.closed(
                    errors.ABNORMAL_CLOSURE,
                    f"more than {MAX_OWED} bytes of automatic replies owed to a peer "
                    "that reads nothing",
                ),
                code=POLICY_VIOLATION,
                reason="replies owed",
            )

    def _response(self, now: float) -> None:
        protocol = self.protocol
        assert protocol is not None
        if protocol.handshake_exc is not None:
            self.fail(errors.translate(protocol.handshake_exc))
            return
        self.phase = Phase.REGISTERING
        self._owner.link_response(self, now)

    def _frame(self, frame: Frame, now: float) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            message = self._assemble(frame)
            if message is not None:
                self._owner.link_message(self, message, now)
        elif opcode is Opcode.PONG:
            self._owner.link_pong(self, bytes(frame.data), now)
        elif opcode is Opcode.CLOSE:
            protocol = self.protocol
            assert protocol is not None
            code = protocol.close_rcvd.code if protocol.close_rcvd is not None else 1005
            self.fail(errors.closed(code))
        elif opcode is Opcode.PING and self.write_paused:
            self.owed += len(frame.data) + 6  # websockets answered it: a pong owed
        # PING: the protocol answered it already.

    def _assemble(self, frame: Frame) -> Message | None:
        """The whole message once its last fragment arrived (text decoded), else None.

        websockets' protocol checks the fragments' order and the total size
        (``max_size``); the count is bounded here.
        """
        fragments = self._fragments
        if not frame.fin:
            if fragments is None:
                fragments = self._fragments = []
                self._fragments_text = frame.opcode is Opcode.TEXT
            elif len(fragments) >= MAX_FRAGMENTS - 1:
                self._fragments = None
                self.fail(
                    errors.closed(MESSAGE_TOO_BIG, f"more than {MAX_FRAGMENTS} fragments"),
                    code=MESSAGE_TOO_BIG,
                    reason="too many fragments",
                )
                return None
            fragments.append(bytes(frame.data))
            return None
        if fragments is not None:
            fragments.append(bytes(frame.data))
            data = b"".join(fragments)
            self._fragments = None
            text = self._fragments_text
        else:
            data = bytes(frame.data)
            text = frame.opcode is Opcode.TEXT
        if not text:
            return data
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            self.fail(
                errors.closed(INVALID_DATA),
                code=INVALID_DATA,
                reason=f"{exc.reason} at position {exc.start}",
            )
            return None

    def hold(self, message: Message) -> None:
        """Keep ``message`` for :attr:`early` (delivered once the application reads)."""
        if self.early is _NONE_EARLY:
            self.early = []
        self.early.append(message)

    # -- outbound --------------------------------------------------------------------------------

    def send(self, frame: Message) -> int:
        """Send one data frame; return :attr:`written` after it.  A no-op unless the
        WebSocket is open."""
        protocol = self.protocol
        if protocol is None or protocol.state is not OPEN:
            return self.written
        if isinstance(frame, str):
            protocol.send_text(frame.encode())
        else:
            protocol.send_binary(frame)
        self.flush()
        return self.written

    def send_reply(self, frame: Message) -> None:
        """Send an automatic reply (a protocol's ack): owed while the peer does not read."""
        before = self.written
        self.send(frame)
        if self.write_paused:
            self.owed += self.written - before

    def ping(self) -> bytes:
        """Send a ping; return its payload (unique on this link)."""
        protocol = self.protocol
        assert protocol is not None
        self.pings += 1
        payload = self.pings.to_bytes(4, "big")
        protocol.send_ping(payload)
        self.flush()
        return payload

    @property
    def confirmed(self) -> int:
        """Bytes of :attr:`written` that left the process (no longer in our write buffer)."""
        io = self.io
        return self.written if io is None else self.written - io.get_write_buffer_size()

    def writing(self, paused: bool) -> None:
        """The byte link's write buffer went above its high mark (True) or below its low one."""
        self.write_paused = paused
        if not paused:
            self.owed = 0

    def flush(self) -> None:
        """Write what the protocol has for the network (after every call into it)."""
        protocol, io, guard = self.protocol, self.io, self.guard
        if protocol is None or io is None or (guard is not None and not guard()):
            return
        for data in protocol.data_to_send():
            if data:
                io.write(data)
                self.written += len(data)
            elif io.can_write_eof():
                io.write_eof()
            else:
                io.close()
        if protocol.state is CLOSED and self.phase == Phase.CLOSING:
            io.close()

    # -- the end ---------------------------------------------------------------------------------

    def fail(self, error: TransportError, *, code: int | None = None, reason: str = "") -> None:
        """Fail the link (once): with ``code``, send that close frame first; tell the owner."""
        if self.failed:
            return
        self.failed = True
        protocol = self.protocol
        if code is not None and protocol is not None and protocol.state is OPEN:
            protocol.fail(code, reason)
            self.flush()
        self._owner.link_failed(self, error)

    def eof(self) -> None:
        """The peer half-closed the byte link."""
        protocol = self.protocol
        if protocol is not None:
            protocol.receive_eof()
            self.flush()
        self.fail(self.ended())

    def lost(self, exc: BaseException | None) -> None:
        """The byte link is gone (``exc``: why, if it broke)."""
        protocol = self.protocol
        if protocol is not None:
            protocol.receive_eof()  # idempotent: the protocol ends CLOSED
        if not self.failed:
            if exc is None:
                error = self.ended()
            elif self.phase in (Phase.DIALING, Phase.HANDSHAKE):
                error = errors.translate(exc)  # a connect that failed: its kind
            else:  # an open link that broke: no close frame (RFC 6455 7.1.5)
                error = errors.closed(errors.ABNORMAL_CLOSURE, errors.translate(exc).reason)
            self.fail(error)
        self.phase = Phase.CLOSED

    def ended(self) -> TransportError:
        """What the end of the stream means: the handshake cut short, or a close."""
        protocol = self.protocol
        if protocol is None or self.phase == Phase.HANDSHAKE:
            return errors.failed("eof")
        if protocol.state is CLOSED:
            return errors.closed(errors.close_code_of(protocol.close_exc))
        return errors.closed(errors.ABNORMAL_CLOSURE)

    def close(self, code: int, now: float, close_timeout: float) -> bool:
        """Start closing (the lifecycle released the link): a close frame if the
        WebSocket is open, then the byte link once the peer answers.  Frames that
        arrive meanwhile are still reported (rule 10: they are delivered).  Returns
        False if there was nothing to close cleanly (the byte link was aborted)."""
        protocol, io = self.protocol, self.io
        if io is None or protocol is None or self.phase in (Phase.HANDSHAKE, Phase.CLOSED):
            if io is not None:
                io.abort()
            return False
        self.phase = Phase.CLOSING
        if protocol.state is OPEN:
            protocol.send_close(code)
            self.flush()
        io.resume_reading()  # read the peer's close frame even if the app is behind
        return True

    def abort(self) -> None:
        """Drop the byte link now."""
        if self.io is not None:
            self.io.abort()

    def input_pending(self) -> bool:
        """True if bytes arrived that this link has not been handed yet (in the
        socket's receive queue, or buffered by a TLS layer or an in-memory stream):
        a deadline must not be judged before they are (rule 8)."""
        pending = getattr(self.io, "input_pending", None)  # asyncio's transports have none:
        return pending is not None and bool(pending())  # the loop reads before its timers
