"""The protocol adapter seam.

An adapter turns application messages into frames and back, and knows its
protocol's heartbeat, registration handshake, message ids (for de-duplication)
and acknowledgements.  Adapters are small and stateless apart from what their
protocol needs; one adapter instance serves one connection.

**Acknowledgements** (:class:`Acknowledging`): a protocol whose peer answers each
request frame with a frame carrying the same id (lwp's ``mid``; json with a
configured key) lets the delivery ledger keep a frame until it is acknowledged
and send it again after a reconnect (at-least-once), and lets
``LiveConnection.request()`` return the answer.  Without it, a frame is done once
it left the process (docs/protocol.md says what that guarantees).

**Decoding never raises**: a frame an adapter cannot read is delivered as a value
saying so (:class:`Undecodable`, or the adapter's own such type); the engine
also turns anything an adapter raises into an :class:`Undecodable`, so one bad
frame never costs the link or the frames behind it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

import attrs

from fsm_live.credentials import CredentialsProvider
from fsm_live.transport.base import Message

__all__ = (
    "MAX_UNDECODABLE",
    "Acknowledging",
    "Decoded",
    "ProtocolAdapter",
    "Registration",
    "SimpleDecoder",
    "Undecodable",
)

#: Characters of a frame an :class:`Undecodable` keeps (the peer chose them all).
MAX_UNDECODABLE = 1024


@attrs.frozen
class Decoded:
    """One item decoded from an inbound frame.

    ``message`` is for the application (None for protocol-only frames);
    ``message_id`` de-duplicates it; ``ack`` is the id of one of our frames this
    one acknowledges (a heartbeat, a request: see :class:`Acknowledging`) and
    ``answer`` what a request's sender gets (the frame's value); ``reply`` is a
    frame to send back (our ack of a push).
    """

    message: Any = None
    message_id: Hashable | None = None
    ack: Hashable | None = None
    answer: Any = None
    reply: Message | None = None


@attrs.frozen
class Undecodable:
    """An inbound frame the adapter could not decode, delivered instead of dropped.

    ``frame`` is the frame, cut to :data:`MAX_UNDECODABLE` characters (or bytes);
    ``error`` names what went wrong (an exception's type, never its text when the
    peer chose it).
    """

    frame: Message
    error: str

    @classmethod
    def of(cls, frame: Message, error: str) -> Undecodable:
        """The value for ``frame``, cut to the bound."""
        return cls(frame[:MAX_UNDECODABLE], error)


class Registration(Protocol):
    """A protocol's handshake right after the WebSocket opens, without I/O.

    The engine sends :meth:`request`'s frames, then hands every inbound frame
    to :meth:`reply` until it accepts or refuses, all under the open timeout.
    """

    def request(self) -> list[Message]:
        """The frames to send as soon as the WebSocket is open (e.g. lwp's ``/reg``)."""
        ...

    def reply(self, frame: Message) -> list[Message] | None:
        """None when ``frame`` is not the reply (a push that came first: it is kept
        and delivered once connected); the frames to send next when the server
        accepted.  Raises :class:`~fsm_live.errors.TransportError` with kind
        ``registration_rejected`` when it refused.
        """
        ...


class ProtocolAdapter(Protocol):
    """What fsm_live needs from an application protocol."""

    #: The name shown in stats and the CLI.
    name: str
    #: True when the heartbeat is a WebSocket ping frame (its pong is the ack).
    uses_ping: bool

    def encode(self, message: Any) -> Message:
        """The frame for an application message; raises TypeError/ValueError if unencodable."""
        ...

    def decode(self, frame: Message) -> list[Decoded]:
        """Every item in an inbound frame (a sync push may carry several), in order."""
        ...

    def heartbeat(self) -> tuple[str, Message]:
        """A new app-level heartbeat: its id and its frame (unused when ``uses_ping``)."""
        ...

    async def prepare(self, credentials: CredentialsProvider | None) -> Registration | None:
        """Await what the registration needs (e.g. an access token) before dialling;
        None when the protocol has no registration.

        Raises :class:`~fsm_live.errors.TransportError` (a provider's own
        exception becomes one of kind ``credentials``).
        """
        ...


@runtime_checkable
class Acknowledging(Protocol):
    """An adapter whose peer acknowledges frames by id (optional, beside
    :class:`ProtocolAdapter`)."""

    #: False when this instance has no acknowledgements configured (json without a key).
    acknowledges: bool

    def encode_tracked(self, message: Any, *, request: bool) -> tuple[Message, Hashable | None]:
        """The frame for ``message`` and the id its acknowledgement will carry (None:
        this frame is not acknowledged).  With ``request`` the frame must be: an id
        is added if the message has none.  Raises TypeError/ValueError as
        :meth:`ProtocolAdapter.encode` does.
        """
        ...


@runtime_checkable
class SimpleDecoder(Protocol):
    """An optional fast path an adapter may add to :meth:`ProtocolAdapter.decode`.

    The reader calls it for every inbound frame when the adapter has it: most
    frames of most protocols are one application message and nothing else, and
    this saves a list and a :class:`Decoded` per frame.
    """

    def decode_simple(self, frame: Message) -> tuple[Any, Hashable | None] | None:
        """``(message, message_id)`` when the frame is exactly one application
        message (``message_id`` None when it has none) and means nothing else to
        the protocol: no heartbeat ack, no reply to send.  None otherwise: the
        reader then calls :meth:`ProtocolAdapter.decode`.
        """
        ...
