"""The ``json`` adapter: every message is one JSON text frame.

Heartbeats are WebSocket ping frames (no app heartbeat beyond ping).  Inbound
objects that carry an ``"id"`` member are de-duplicated by it.  Frames that are
not valid JSON are delivered as :class:`InvalidJson` values rather than dropped,
so nothing is lost silently.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from fsm_live.protocols.base import Decoded
from fsm_live.protocols.ping import PingProtocol
from fsm_live.transport.base import Message

__all__ = ("InvalidJson", "JsonProtocol")


@attrs.frozen
class InvalidJson:
    """An inbound frame that was not valid JSON, kept as received."""

    frame: Message
    error: str


class JsonProtocol(PingProtocol):
    """JSON text frames; ping-frame heartbeats."""

    name = "json"

    def encode(self, message: Any) -> Message:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    def decode(self, frame: Message) -> list[Decoded]:
        message, message_id = self.decode_simple(frame)
        return [Decoded(message=message, message_id=message_id)]

    def decode_simple(self, frame: Message) -> tuple[Any, str | None]:
        """Every frame is one message, with the ``"id"`` of an object as its id
        (see :class:`~fsm_live.protocols.base.SimpleDecoder`)."""
        try:
            value = json.loads(frame)
        except ValueError as exc:
            return InvalidJson(frame, str(exc)), None
        message_id = value.get("id") if isinstance(value, dict) else None
        return value, None if message_id is None else str(message_id)
