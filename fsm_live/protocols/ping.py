"""The ``ping`` adapter: works against any WebSocket server.

The heartbeat is a WebSocket ping frame (every server answers with a pong);
messages pass through unchanged (``str`` as text, ``bytes`` as binary); no
registration, no de-duplication, no acknowledgements.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from fsm_live.credentials import CredentialsProvider
from fsm_live.protocols.base import Decoded, Registration
from fsm_live.transport.base import Message

__all__ = ("PingProtocol",)


class PingProtocol:
    """Ping-frame heartbeats; messages are raw text or bytes."""

    name = "ping"
    uses_ping = True

    def encode(self, message: Any) -> Message:
        if not isinstance(message, str | bytes):
            raise TypeError(f"the ping protocol sends str or bytes, not {type(message).__name__}")
        return message

    def decode(self, frame: Message) -> list[Decoded]:
        return [Decoded(message=frame)]

    def decode_simple(self, frame: Message) -> tuple[Any, Hashable | None] | None:
        """Every frame is one message (see :class:`~fsm_live.protocols.base.SimpleDecoder`)."""
        return frame, None

    def heartbeat(self) -> tuple[str, Message]:
        raise NotImplementedError("the ping protocol's heartbeat is a ping frame")

    async def prepare(self, credentials: CredentialsProvider | None) -> Registration | None:
        return None
