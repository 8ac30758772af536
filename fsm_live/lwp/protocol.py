"""The ``lwp`` adapter: the messaging client's JSON protocol, with its defects fixed.

Frames are JSON text: ``{"lwp": PATH, "headers": {"mid": MID, ...}, "body": ...}``.
Replies carry ``"code"`` (200 = ok) and echo the request's ``headers.mid``.

* **mid**: a random number 0-999 (from :mod:`secrets`), the current time in ms,
  and the suffix ``" 0"``.  The wall clock is used here only because the
  protocol's ids embed it; no timing depends on it.
* **heartbeat**: ``{"lwp": "/!", "headers": {"mid": MID}}``; its ack is the reply
  whose mid matches (never "any frame with code 200").
* **registration** right after connect: ``/reg`` with the access token and device
  id; CONNECTED only once the server's reply to it says 200 (a refusal is an
  ``auth`` failure: kind ``registration_rejected``); then ``/r/SyncStatus/ackDiff``.
* **pushes** are acknowledged with a code-200 reply echoing ``mid`` (and ``sid``).
  A sync push carries a list of items: every one is processed; base64-encoded
  JSON items are decoded, other encodings go to the ``decoder`` hook.
* **de-duplication** by the item's ``messageId`` (else the push's mid and the
  item's index).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from fsm_live.credentials import CredentialsProvider, Secret, provider_errors
from fsm_live.errors import TransportError
from fsm_live.protocols.base import Decoded, Registration
from fsm_live.transport.base import Message
from fsm_live.transport.redaction import peer_text

__all__ = ("LwpCredentials", "LwpProtocol", "UndecodedItem", "new_mid")

REGISTER: Final = "/reg"
HEARTBEAT: Final = "/!"
ACK_DIFF: Final = "/r/SyncStatus/ackDiff"
SYNC_PATHS: Final = frozenset({"/s/sync", "/s/para"})


def new_mid() -> str:
    """A message id in the protocol's format: ``"<0-999><unix ms> 0"``."""
    return f"{secrets.randbelow(1000)}{int(time.time() * 1000)} 0"


@runtime_checkable
class LwpCredentials(CredentialsProvider, Protocol):
    """What registration needs beyond handshake headers."""

    @property
    def device_id(self) -> str:
        """The ``did`` sent at registration."""
        ...

    async def access_token(self) -> Secret:
        """The current access token (``token`` at registration)."""
        ...


@attrs.frozen
class UndecodedItem:
    """A sync item the built-in decoding (base64 JSON) could not read."""

    item: Any


def _reply(mid: str, sid: str | None = None) -> str:
    headers = {"mid": mid} if sid is None else {"mid": mid, "sid": sid}
    return json.dumps({"code": 200, "headers": headers}, separators=(",", ":"))


def _decode_base64_json(item: Any) -> Any:
    data = item.get("data") if isinstance(item, dict) else item
    if not isinstance(data, str):
        raise TypeError("not a base64 string")
    return json.loads(base64.b64decode(data, validate=True))


class LwpProtocol:
    """The lwp protocol.  One instance per connection.

    Every request frame is acknowledged by a reply echoing its ``mid``
    (:class:`~fsm_live.protocols.base.Acknowledging`): the delivery ledger keeps a
    sent frame until then and sends it again, with the same ``mid``, after a
    reconnect; ``LiveConnection.request()`` returns the reply.
    """

    name = "lwp"
    uses_ping = False
    acknowledges = True

    def __init__(
        self,
        *,
        app_key: str = "444e9908a51d1cb236a27862abc769c9",
        user_agent: str = "fsm_live",
        decoder: Callable[[Any], Any] | None = None,
    ) -> None:
        self.app_key = app_key
        self.user_agent = user_agent
        #: Decodes sync items that are not base64 JSON; by default they are delivered
        #: as :class:`UndecodedItem`.
        self.decoder = decoder or UndecodedItem

    def encode(self, message: Any) -> Message:
        """A message as a ``/r/MessageSend/sendByReceiverScope``-style request frame.

        ``message`` is a mapping with ``lwp`` (path) and ``body``; a mid is added.
        """
        return self.encode_tracked(message, request=False)[0]

    def encode_tracked(self, message: Any, *, request: bool) -> tuple[Message, str]:
        """The frame (see :meth:`encode`) and its ``mid``, which the reply echoes."""
        if not isinstance(message, dict) or "lwp" not in message:
            raise TypeError("an lwp message is a dict with an 'lwp' path and a 'body'")
        mid = new_mid()
        headers = {**message.get("headers", {}), "mid": mid}
        frame = json.dumps(
            {**message, "headers": headers}, separators=(",", ":"), ensure_ascii=False
        )
        return frame, mid

    def heartbeat(self) -> tuple[str, Message]:
        mid = new_mid()
        return mid, json.dumps({"lwp": HEARTBEAT, "headers": {"mid": mid}}, separators=(",", ":"))

    async def prepare(self, credentials: CredentialsProvider | None) -> Registration:
        """Fetch the access token registration sends (raises TransportError)."""
        if not isinstance(credentials, LwpCredentials):
            raise TransportError(
                "lwp registration needs credentials with a token and a device id",
                kind="registration_rejected",
            )
        with provider_errors():
            token = await credentials.access_token()
        return _LwpRegistration(self, token, credentials.device_id)

    def decode(self, frame: Message) -> list[Decoded]:
        value = _parse(frame)
        path = None if value is None else value.get("lwp")
        if value is None or not isinstance(path, str | None):
            return [Decoded(message=UndecodedItem(frame))]
        mid = _mid(value)
        if "code" in value:  # a reply: it acknowledges one of our frames (by mid)
            return [Decoded(ack=mid, answer=value)]
        headers = value.get("headers")
        sid = headers.get("sid") if isinstance(headers, dict) else None
        sid = sid if isinstance(sid, str) else None
        ack = _reply(mid, sid) if mid is not None else None
        items = _sync_items(value) if path in SYNC_PATHS else None
        if items is None:
            return [Decoded(message=value, message_id=mid, reply=ack)]
        decoded = [Decoded(reply=ack)] if ack is not None else []
        for index, item in enumerate(items):
            try:
                message = _decode_base64_json(item)
            except (TypeError, ValueError, binascii.Error, RecursionError):
                message = self.decoder(item)
            message_id = message.get("messageId") if isinstance(message, dict) else None
            decoded.append(
                Decoded(
                    message=message,
                    message_id=str(
                        message_id if isinstance(message_id, str | int) else f"{mid}:{index}"
                    ),
                )
            )
        return decoded


def _parse(frame: Message) -> dict[str, Any] | None:
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        return None
    return value if isinstance(value, dict) else None


def _mid(value: dict[str, Any]) -> str | None:
    headers = value.get("headers")
    mid = headers.get("mid") if isinstance(headers, dict) else None
    return mid if isinstance(mid, str) else None


def _sync_items(value: dict[str, Any]) -> list[Any] | None:
    body = value.get("body")
    package = body.get("syncPushPackage") if isinstance(body, dict) else None
    data = package.get("data") if isinstance(package, dict) else None
    return data if isinstance(data, list) else None


class _LwpRegistration:
    """``/reg`` with the token and device id; CONNECTED once the reply to its mid says
    200; then ``/r/SyncStatus/ackDiff``."""

    __slots__ = ("_device_id", "_mid", "_protocol", "_token")

    def __init__(self, protocol: LwpProtocol, token: Secret, device_id: str) -> None:
        self._protocol = protocol
        self._token = token
        self._device_id = device_id
        self._mid = new_mid()

    def request(self) -> list[Message]:
        protocol = self._protocol
        return [
            json.dumps(
                {
                    "lwp": REGISTER,
                    "headers": {
                        "cache-header": "app-key token ua wv",
                        "app-key": protocol.app_key,
                        "token": self._token.reveal(),
                        "ua": protocol.user_agent,
                        "dt": "j",
                        "wv": "im:3,au:3,sy:6",
                        "sync": "0,0;0;0;",
                        "did": self._device_id,
                        "mid": self._mid,
                    },
                },
                separators=(",", ":"),
            )
        ]

    def reply(self, frame: Message) -> list[Message] | None:
        reply = _parse(frame)
        if reply is None or "code" not in reply or _mid(reply) != self._mid:
            return None  # a push before the reply: delivered once connected
        if reply.get("code") != 200:  # the peer's text: cut, escaped
            raise TransportError(
                f"registration rejected (code {peer_text(reply.get('code'))})",
                kind="registration_rejected",
            )
        now_ms = int(time.time() * 1000)
        return [
            json.dumps(
                {
                    "lwp": ACK_DIFF,
                    "headers": {"mid": new_mid()},
                    "body": [
                        {
                            "pipeline": "sync",
                            "tooLong2Tag": "PNM,1",
                            "channel": "sync",
                            "topic": "sync",
                            "highPts": 0,
                            "pts": now_ms * 1000,
                            "seq": 0,
                            "timestamp": now_ms,
                        }
                    ],
                },
                separators=(",", ":"),
            )
        ]
