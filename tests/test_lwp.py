"""The lwp adapter: mids, heartbeat acks matched by mid, registration, sync items, acks."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_live.credentials import Secret
from fsm_live.errors import TransportError
from fsm_live.lwp.credentials import CookieCredentials
from fsm_live.lwp.protocol import LwpProtocol, UndecodedItem, new_mid
from fsm_live.protocols.base import Decoded
from fsm_live.transport.base import Message
from fsm_live.transport.redaction import PEER_TEXT_LIMIT

pytestmark = pytest.mark.anyio


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


async def token_source(cookies: Mapping[str, Secret]) -> Secret:
    return Secret("tok-1")


CREDENTIALS = CookieCredentials("unb=42; cna=abc", token_source=token_source)


def reply_to(request: Message, code: int) -> str:
    return json.dumps({"code": code, "headers": {"mid": json.loads(request)["headers"]["mid"]}})


def test_mid_format() -> None:
    mid = new_mid()
    assert re.fullmatch(r"\d{14,16} 0", mid)
    assert len({new_mid() for _ in range(200)}) > 150


def test_a_reply_acknowledges_the_frame_whose_mid_it_echoes() -> None:
    protocol = LwpProtocol()
    assert protocol.acknowledges
    mid, frame = protocol.heartbeat()
    assert json.loads(frame) == {"lwp": "/!", "headers": {"mid": mid}}
    reply = {"code": 200, "headers": {"mid": mid}}
    [decoded] = protocol.decode(json.dumps(reply))
    assert decoded.ack == mid
    assert decoded.answer == reply  # what request() returns
    assert decoded.message is None  # a reply is never a message
    request, request_mid = protocol.encode_tracked({"lwp": "/r/x", "body": 1}, request=True)
    assert json.loads(request)["headers"]["mid"] == request_mid
    [other] = protocol.decode(json.dumps({"code": 200, "headers": {"mid": "9 0"}}))
    assert other.ack == "9 0"  # the runner ignores acks of heartbeats it never sent


async def test_registration_waits_for_the_reply_to_its_mid() -> None:
    with anyio.fail_after(5):
        registration = await LwpProtocol(user_agent="ua-test").prepare(CREDENTIALS)
    [request] = registration.request()
    reg = json.loads(request)
    assert reg["lwp"] == "/reg"
    headers = reg["headers"]
    assert headers["token"] == "tok-1"
    assert headers["ua"] == "ua-test"
    assert headers["dt"] == "j"
    assert headers["wv"] == "im:3,au:3,sy:6"
    assert headers["sync"] == "0,0;0;0;"
    assert headers["cache-header"] == "app-key token ua wv"
    assert headers["did"] == CREDENTIALS.device_id
    assert headers["did"].endswith("-42")
    push = json.dumps({"lwp": "/s/para", "headers": {"mid": "p1 0"}, "body": {"x": 1}})
    assert registration.reply(push) is None  # not the reply: kept, delivered once connected
    other = json.dumps({"code": 200, "headers": {"mid": "9 0"}})
    assert registration.reply(other) is None  # a reply to something else
    then = registration.reply(reply_to(request, 200))
    assert then is not None
    [ack_diff] = then
    assert json.loads(ack_diff)["lwp"] == "/r/SyncStatus/ackDiff"


async def test_rejected_registration_is_an_auth_failure() -> None:
    registration = await LwpProtocol().prepare(CREDENTIALS)
    [request] = registration.request()
    with pytest.raises(TransportError) as caught:
        registration.reply(reply_to(request, 401))
    assert caught.value.kind == "registration_rejected"


async def test_registration_needs_token_credentials() -> None:
    with pytest.raises(TransportError, match="needs credentials"):
        await LwpProtocol().prepare(None)


async def test_a_token_source_that_raises_fails_the_attempt_without_its_message() -> None:
    async def broken_source(cookies: Mapping[str, Secret]) -> Secret:
        raise OSError("GET /token?cookie=unb=42 refused")

    credentials = CookieCredentials("unb=42", token_source=broken_source)
    with anyio.fail_after(5), pytest.raises(TransportError) as caught:
        await LwpProtocol().prepare(credentials)
    assert caught.value.kind == "credentials"
    assert str(caught.value) == "credentials provider raised OSError"


def test_sync_push_processes_every_item_and_acks_once() -> None:
    protocol = LwpProtocol()
    frame = json.dumps(
        {
            "lwp": "/s/sync",
            "headers": {"mid": "m1 0", "sid": "s9"},
            "body": {
                "syncPushPackage": {
                    "data": [
                        {"data": b64({"messageId": "a", "text": "first"})},
                        {"data": b64({"messageId": "b", "text": "second"})},
                        {"data": "%%%not base64%%%", "encoding": "other"},
                    ]
                }
            },
        }
    )
    ack, first, second, third = protocol.decode(frame)
    assert json.loads(ack.reply) == {"code": 200, "headers": {"mid": "m1 0", "sid": "s9"}}
    assert (first.message["text"], first.message_id) == ("first", "a")
    assert (second.message["text"], second.message_id) == ("second", "b")
    assert isinstance(third.message, UndecodedItem)
    assert third.message_id == "m1 0:2"


def test_pluggable_decoder_for_other_encodings() -> None:
    protocol = LwpProtocol(decoder=lambda item: {"decoded": item["data"][::-1]})
    frame = json.dumps(
        {
            "lwp": "/s/sync",
            "headers": {"mid": "m2 0"},
            "body": {"syncPushPackage": {"data": [{"data": "cba"}]}},
        }
    )
    _, item = protocol.decode(frame)
    assert item.message == {"decoded": "abc"}


def test_other_pushes_are_delivered_whole_and_acked() -> None:
    [decoded] = LwpProtocol().decode(
        json.dumps({"lwp": "/s/para", "headers": {"mid": "m3 0"}, "body": {"k": 1}})
    )
    assert decoded.message["body"] == {"k": 1}
    assert decoded.message_id == "m3 0"
    assert json.loads(decoded.reply) == {"code": 200, "headers": {"mid": "m3 0"}}


def test_garbage_is_delivered_not_dropped() -> None:
    [decoded] = LwpProtocol().decode("not json")
    assert decoded.message == UndecodedItem("not json")


def test_encode_adds_a_mid() -> None:
    frame = json.loads(LwpProtocol().encode({"lwp": "/r/MessageSend/send", "body": [1]}))
    assert frame["lwp"] == "/r/MessageSend/send"
    assert frame["headers"]["mid"].endswith(" 0")
    with pytest.raises(TypeError, match="'lwp' path"):
        LwpProtocol().encode("text")


# -- hostile frames: decoding never raises -----------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
#: lwp-shaped frames whose fields may have any type (a path that is a list, headers
#: that are a string, sync data that is a number, items of any shape).
_LWP = st.fixed_dictionaries(
    {},
    optional={
        "lwp": st.sampled_from(["/s/sync", "/s/para", "/push"]) | _JSON,
        "headers": st.fixed_dictionaries({}, optional={"mid": _JSON, "sid": _JSON}) | _JSON,
        "code": _JSON,
        "body": st.fixed_dictionaries(
            {}, optional={"syncPushPackage": st.fixed_dictionaries({}, optional={"data": _JSON})}
        )
        | _JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(frame=st.text() | st.binary() | (_LWP | _JSON).map(json.dumps))
def test_any_frame_decodes_without_raising(frame: str | bytes) -> None:
    """Whatever the peer sends, decode() returns items; what it cannot read is an
    UndecodedItem, delivered."""
    decoded = LwpProtocol().decode(frame)
    assert all(isinstance(item.message_id, str | None) for item in decoded)


@pytest.mark.parametrize("path", [["/s/sync"], {"a": 1}, 7, True])
def test_a_path_that_is_not_a_string_is_undecoded(path: object) -> None:
    frame = json.dumps({"lwp": path, "headers": {"mid": "m4 0"}})
    assert LwpProtocol().decode(frame) == [Decoded(message=UndecodedItem(frame))]


def test_frames_nested_too_deeply_are_undecoded() -> None:
    frame = "[" * 100_000 + "]" * 100_000
    assert LwpProtocol().decode(frame) == [Decoded(message=UndecodedItem(frame))]
    item = base64.b64encode(frame.encode()).decode()
    sync = json.dumps(
        {
            "lwp": "/s/sync",
            "headers": {"mid": "m5 0"},
            "body": {"syncPushPackage": {"data": [item]}},
        }
    )
    _, decoded = LwpProtocol().decode(sync)
    assert decoded.message == UndecodedItem(item)


async def test_a_refusal_quotes_its_code_cut_and_escaped() -> None:
    """The code is the peer's text: the error (which reaches stats, traces and the
    transition log) quotes at most PEER_TEXT_LIMIT characters of it, escaped."""
    registration = await LwpProtocol().prepare(CREDENTIALS)
    [request] = registration.request()
    mid = json.loads(request)["headers"]["mid"]
    huge = json.dumps({"code": "\n" + "A" * 500_000, "headers": {"mid": mid}})
    with pytest.raises(TransportError) as caught:
        registration.reply(huge)
    assert str(caught.value) == (
        f"registration rejected (code \\n{'A' * (PEER_TEXT_LIMIT - 2)}... (500001 characters))"
    )
    with pytest.raises(TransportError, match=r"^registration rejected \(code 401\)$"):
        registration.reply(reply_to(request, 401))
