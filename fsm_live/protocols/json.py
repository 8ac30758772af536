"""The ``json`` adapter: every message is one JSON text frame.

Heartbeats are WebSocket ping frames (no app heartbeat beyond ping).  Frames that
are not valid JSON (or nest deeper than Python's recursion limit lets it read)
are delivered as :class:`InvalidJson` values rather than dropped, so nothing is
lost silently: decoding never raises, whatever the frame.

De-duplication is opt-in: ``JsonProtocol(dedup_key="id")`` drops an inbound
object whose ``"id"`` member equals, as a JSON value, one seen within
``Config.message_expire_time`` (``1`` and ``"1"`` differ).  Without a key nothing
is dropped: JSON-RPC clients, whose ids restart at 1 after a reconnect, and
most feeds, whose messages have no id, get every message.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import attrs

from fsm_live.protocols.base import Decoded
from fsm_live.protocols.ping import PingProtocol
from fsm_live.transport.base import Message

__all__ = ("InvalidJson", "JsonProtocol")


@attrs.frozen
class InvalidJson:
    """An inbound frame that was not valid JSON, kept as received; ``error`` says why."""

    frame: Message
    error: str


class JsonProtocol(PingProtocol):
    """JSON text frames; ping-frame heartbeats; de-duplication by ``dedup_key`` if given."""

    name = "json"

    def __init__(self, *, dedup_key: str | None = None) -> None:
        self.dedup_key = dedup_key

    def encode(self, message: Any) -> Message:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def decode(self, frame: Message) -> list[Decoded]:
        message, message_id = self.decode_simple(frame)
        return [Decoded(message=message, message_id=message_id)]

    def decode_simple(self, frame: Message) -> tuple[Any, Hashable | None]:
        """Every frame is one message; its id is the ``dedup_key`` member of an object,
        compared as a JSON value (see :class:`~fsm_live.protocols.base.SimpleDecoder`)."""
        try:
            value = json.loads(frame)
        except ValueError as exc:
            return InvalidJson(frame, str(exc)), None
        except RecursionError:  # a few KB of [[[[... (the decoder recurses per level)
            return InvalidJson(frame, "nested too deeply"), None
        key = self.dedup_key
        if key is None or not isinstance(value, dict) or key not in value:
            return value, None
        return value, _json_identity(value[key])


def _json_identity(value: Any) -> Hashable:
    """A hashable key for a JSON value: equal values give equal keys, and values of
    different JSON types differ (``1``, ``"1"`` and ``true`` are three ids)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
