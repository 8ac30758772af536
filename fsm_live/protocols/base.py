"""The protocol adapter seam.

An adapter turns application messages into frames and back, and knows its
protocol's heartbeat, registration handshake, message ids (for de-duplication)
and acknowledgements.  Adapters are small and stateless apart from what their
protocol needs; one adapter instance serves one connection.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

import attrs

from fsm_live.credentials import CredentialsProvider
from fsm_live.transport.base import Link, Message

__all__ = ("Decoded", "ProtocolAdapter", "SimpleDecoder")


@attrs.frozen
class Decoded:
    """One item decoded from an inbound frame.

    ``message`` is for the application (None for protocol-only frames);
    ``message_id`` de-duplicates it; ``heartbeat_ack`` is the id of the heartbeat
    this frame acknowledges; ``reply`` is a frame to send back (an ack).
    """

    message: Any = None
    message_id: Hashable | None = None
    heartbeat_ack: str | None = None
    reply: Message | None = None


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

    async def register(self, link: Link, credentials: CredentialsProvider | None
                       ) -> list[Message]:
        """The handshake right after the WebSocket opens (e.g. registration).

        Returns once the server accepted it, with any frames that arrived before
        the acceptance (the reader processes them first, so nothing is lost).
        Raises :class:`~fsm_live.errors.TransportError` with kind
        ``registration_rejected`` when the server refused, or as the link raises.
        Runs under the open timeout.
        """
        ...


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
