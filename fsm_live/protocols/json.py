"""The ``json`` adapter: every message is one JSON text frame.

Heartbeats are WebSocket ping frames (no app heartbeat beyond ping).  Frames that
are not valid JSON are delivered as :class:`InvalidJson` values rather than
dropped, so nothing is lost silently.

De-duplication is opt-in: ``JsonProtocol(dedup_key="id")`` drops an inbound
object whose ``"id"`` member equals, as a JSON value, one seen within
``Config.message_expire_time`` (``1`` and ``"1"`` differ).  Without a key nothing
is dropped: JSON-RPC clients, whose ids restart at 1 after a reconnect, and
most feeds, whose messages have no id, get every message.

Acknowledgements are opt-in too: with ``JsonProtocol(ack_key="id")`` an outbound
object that has an ``"id"`` member is kept by the delivery ledger until an
inbound object with an equal ``"id"`` arrives (JSON-RPC's response, say), and is
sent again after a reconnect until then; ``LiveConnection.request()`` adds an id
(a whole number, counting from 1) to an object that has none and returns that
inbound object.  An inbound object whose id acknowledges nothing we sent is an
ordinary message.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Hashable
from typing import Any

import attrs

from fsm_live.protocols.base import MAX_UNDECODABLE, Decoded
from fsm_live.protocols.ping import PingProtocol
from fsm_live.transport.base import Message

__all__ = ("InvalidJson", "JsonProtocol")


@attrs.frozen
class InvalidJson:
    """An inbound frame that was not valid JSON (or nested too deeply to read),
    kept as received, cut to ``MAX_UNDECODABLE`` characters."""

    frame: Message
    error: str


class JsonProtocol(PingProtocol):
    """JSON text frames; ping-frame heartbeats; de-duplication by ``dedup_key`` and
    acknowledgement by ``ack_key``, each if given."""

    name = "json"

    def __init__(self, *, dedup_key: str | None = None, ack_key: str | None = None) -> None:
        self.dedup_key = dedup_key
        self.ack_key = ack_key
        self._ids = itertools.count(1)

    @property
    def acknowledges(self) -> bool:
        """True with an ``ack_key`` (see :class:`~fsm_live.protocols.base.Acknowledging`)."""
        return self.ack_key is not None

    def encode(self, message: Any) -> Message:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def encode_tracked(self, message: Any, *, request: bool) -> tuple[Message, Hashable | None]:
        """The frame and the ``ack_key`` member's identity (None without one).  A
        request must be an object (TypeError otherwise); it gets an id if it has none."""
        key = self.ack_key
        if key is None:
            if request:
                raise TypeError("JsonProtocol() acknowledges nothing: give it ack_key=")
            return self.encode(message), None
        if not isinstance(message, dict):
            if request:
                raise TypeError(f"a json request is an object, not {type(message).__name__}")
            return self.encode(message), None
        if request and key not in message:
            message = {**message, key: next(self._ids)}
        frame = self.encode(message)
        return frame, _json_identity(message[key]) if key in message else None

    def decode(self, frame: Message) -> list[Decoded]:
        message, message_id = self.decode_simple(frame)
        key = self.ack_key
        if key is not None and isinstance(message, dict) and key in message:
            try:
                ack = _json_identity(message[key])
            except (TypeError, ValueError, RecursionError):
                ack = None
            return [Decoded(message=message, message_id=message_id, ack=ack, answer=message)]
        return [Decoded(message=message, message_id=message_id)]

    def decode_simple(self, frame: Message) -> tuple[Any, Hashable | None]:
        """Every frame is one message; its id is the ``dedup_key`` member of an object,
        compared as a JSON value (see :class:`~fsm_live.protocols.base.SimpleDecoder`).
        Never raises: a frame that is not JSON, or too deeply nested to read, is an
        :class:`InvalidJson`."""
        try:
            value = json.loads(frame)
        except (ValueError, RecursionError) as exc:
            error = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
            return InvalidJson(frame[:MAX_UNDECODABLE], error[:200]), None
        key = self.dedup_key
        if key is None or not isinstance(value, dict) or key not in value:
            return value, None
        try:
            return value, _json_identity(value[key])
        except (TypeError, ValueError, RecursionError):
            return value, None


def _json_identity(value: Any) -> Hashable:
    """A hashable key for a JSON value: equal values give equal keys, and values of
    different JSON types differ (``1``, ``"1"`` and ``true`` are three ids)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
