"""fsm_live.protocols.json: one JSON text frame per message; invalid JSON delivered as
InvalidJson, not dropped; ids (for de-duplication) only with ``dedup_key``, compared
as JSON values; acknowledgements only with ``ack_key``.  No app heartbeat."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_live.protocols.base import Decoded, SimpleDecoder
from fsm_live.protocols.json import InvalidJson, JsonProtocol
from fsm_live.protocols.ping import PingProtocol


def test_it_names_itself_and_heartbeats_with_ping_frames() -> None:
    protocol = JsonProtocol()
    assert protocol.name == "json"
    assert protocol.uses_ping is True
    assert isinstance(protocol, PingProtocol)
    with pytest.raises(NotImplementedError):
        protocol.heartbeat()


@pytest.mark.anyio
async def test_there_is_no_registration() -> None:
    assert await JsonProtocol(dedup_key="id").prepare(None) is None


# -- encode ------------------------------------------------------------------------------


def test_a_message_is_one_compact_json_text_frame() -> None:
    frame = JsonProtocol().encode({"op": "sub", "args": [1, 2], "on": True, "x": None})
    assert isinstance(frame, str)
    assert frame == '{"op":"sub","args":[1,2],"on":true,"x":null}'


def test_non_ascii_text_is_sent_as_is() -> None:
    assert JsonProtocol().encode({"city": "Zürich ☃"}) == '{"city":"Zürich ☃"}'


@pytest.mark.parametrize("message", [{"a": 1}, [1, "two", 3.5], "text", 7, None, False])
def test_what_is_encoded_decodes_to_the_same_value(message: Any) -> None:
    protocol = JsonProtocol()
    assert protocol.decode(protocol.encode(message)) == [Decoded(message=message)]


@pytest.mark.parametrize("message", [object(), {1, 2}, b"bytes", {"when": math}])
def test_an_unencodable_message_is_a_type_error(message: Any) -> None:
    with pytest.raises(TypeError):
        JsonProtocol().encode(message)


def test_a_circular_message_is_a_value_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"[Cc]ircular"):
        JsonProtocol().encode(loop)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_number_json_cannot_carry_is_a_value_error(value: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        JsonProtocol().encode({"x": value})


# -- decode ------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ['{"a": 1}', b'{"a": 1}', "[1,2]", '"s"', "3", "null"])
def test_a_frame_is_one_message(frame: str | bytes) -> None:
    assert JsonProtocol().decode(frame) == [Decoded(message=json.loads(frame))]


@pytest.mark.parametrize("frame", ["not json", "", '{"a": 1', b"\xff\xfe", "{} {}"])
def test_invalid_json_is_delivered_as_invalid_json(frame: str | bytes) -> None:
    [decoded] = JsonProtocol(dedup_key="id").decode(frame)
    assert isinstance(decoded.message, InvalidJson)
    assert decoded.message.frame == frame  # kept as received
    assert decoded.message.error  # why it is not JSON
    assert decoded.message_id is None


def test_invalid_json_is_a_frozen_value() -> None:
    value = InvalidJson("x", "Expecting value")
    assert value == InvalidJson("x", "Expecting value")
    with pytest.raises(AttributeError):
        value.frame = "y"  # type: ignore[misc]


def test_without_an_ack_key_no_frame_carries_an_ack_or_a_reply() -> None:
    protocol = JsonProtocol(dedup_key="id")
    assert not protocol.acknowledges
    for frame in ['{"id": 1, "ack": 1}', '{"type": "pong", "id": "hb-1"}', "garbage"]:
        [decoded] = protocol.decode(frame)
        assert (decoded.ack, decoded.reply) == (None, None)
    with pytest.raises(TypeError, match="ack_key"):
        protocol.encode_tracked({"op": "x"}, request=True)
    assert protocol.encode_tracked({"id": 1}, request=False) == ('{"id":1}', None)


def test_with_an_ack_key_an_object_with_that_member_is_acknowledged_by_its_value() -> None:
    protocol = JsonProtocol(ack_key="id")
    assert protocol.acknowledges
    frame, ack_id = protocol.encode_tracked({"id": 7, "op": "x"}, request=False)
    assert json.loads(frame) == {"id": 7, "op": "x"}
    [decoded] = protocol.decode('{"id": 7, "result": 1}')
    assert decoded.ack == ack_id  # the same JSON value, the same key
    assert decoded.answer == decoded.message == {"id": 7, "result": 1}
    [other] = protocol.decode('{"id": "7"}')
    assert other.ack != ack_id  # "7" is not 7
    assert protocol.encode_tracked([1, 2], request=False) == ("[1,2]", None)


def test_a_request_gets_an_id_when_it_has_none() -> None:
    protocol = JsonProtocol(ack_key="id")
    first, first_id = protocol.encode_tracked({"op": "a"}, request=True)
    second, second_id = protocol.encode_tracked({"op": "b"}, request=True)
    assert json.loads(first) == {"op": "a", "id": 1}
    assert json.loads(second) == {"op": "b", "id": 2}
    assert first_id != second_id
    kept, kept_id = protocol.encode_tracked({"op": "c", "id": "mine"}, request=True)
    assert kept_id == json.dumps("mine")
    assert json.loads(kept)["id"] == "mine"
    with pytest.raises(TypeError, match="object"):
        protocol.encode_tracked("text", request=True)


def test_json_nested_too_deeply_to_read_is_invalid_json_not_an_error() -> None:
    frame = "[" * 100_000 + "]" * 100_000
    [decoded] = JsonProtocol().decode(frame)
    assert isinstance(decoded.message, InvalidJson)
    assert decoded.message.error == "nested too deeply"
    assert len(decoded.message.frame) <= 1024


# -- ids ---------------------------------------------------------------------------------


def ids(protocol: JsonProtocol, *frames: str) -> list[Any]:
    return [item.message_id for frame in frames for item in protocol.decode(frame)]


def test_without_a_key_nothing_has_an_id() -> None:
    assert ids(JsonProtocol(), '{"id": 1}', '{"id": 1}', "[1]") == [None, None, None]


def test_with_a_key_an_object_has_the_id_of_that_member() -> None:
    protocol = JsonProtocol(dedup_key="seq")
    first, again, other = ids(protocol, '{"seq": 5, "a": 1}', '{"a": 2, "seq": 5}', '{"seq": 6}')
    assert first is not None
    assert first == again
    assert hash(first) == hash(again)
    assert first != other


def test_frames_without_the_key_have_no_id() -> None:
    protocol = JsonProtocol(dedup_key="id")
    assert (
        ids(protocol, '{"other": 1}', "[1, 2]", '"id"', "1", '{"nested": {"id": 1}}') == [None] * 5
    )


def test_ids_of_different_json_types_differ() -> None:
    number, text, true = ids(
        JsonProtocol(dedup_key="id"), '{"id": 1}', '{"id": "1"}', '{"id": true}'
    )
    assert len({number, text, true}) == 3


def test_equal_json_values_are_equal_ids() -> None:
    protocol = JsonProtocol(dedup_key="id")
    a, b = ids(protocol, '{"id": {"x": 1, "y": [1, 2]}}', '{"id": {"y": [1, 2], "x": 1}}')
    assert a == b
    null, missing = ids(protocol, '{"id": null}', "{}")
    assert null is not None  # an id that is null is still an id
    assert missing is None


def test_an_id_does_not_depend_on_the_adapter_instance() -> None:
    # A reconnect gets a new adapter; the de-duplication window spans both.
    frame = '{"id": "m-1"}'
    assert ids(JsonProtocol(dedup_key="id"), frame) == ids(JsonProtocol(dedup_key="id"), frame)


# -- the fast path -----------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "id"])
@pytest.mark.parametrize("frame", ['{"id": 3}', '{"x": 1}', "[1]", "oops", b'{"id": "b"}'])
def test_the_fast_path_agrees_with_decode(key: str | None, frame: str | bytes) -> None:
    protocol = JsonProtocol(dedup_key=key)
    assert isinstance(protocol, SimpleDecoder)
    simple = protocol.decode_simple(frame)
    assert simple is not None
    message, message_id = simple
    assert protocol.decode(frame) == [Decoded(message=message, message_id=message_id)]


# -- hostile frames: decoding never raises -----------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    frame=st.text() | st.binary() | _JSON.map(json.dumps),
    key=st.sampled_from([None, "id"]),
)
def test_any_frame_decodes_without_raising(frame: str | bytes, key: str | None) -> None:
    """Whatever the peer sends, decode() returns: a value, or an InvalidJson."""
    protocol = JsonProtocol(dedup_key=key)
    [decoded] = protocol.decode(frame)
    assert protocol.decode_simple(frame) == (decoded.message, decoded.message_id)
