"""fsm_live.protocols.ping: frames pass through unchanged; the heartbeat is a ping frame;
no registration, no ids, no acknowledgements."""

from __future__ import annotations

from typing import Any

import pytest

from fsm_live.protocols.base import Decoded, SimpleDecoder
from fsm_live.protocols.ping import PingProtocol

FRAMES: list[str | bytes] = ["hello", "", '{"id": 1}', b"\x00\xffbinary", b""]


def test_it_names_itself_and_uses_ping_frames() -> None:
    protocol = PingProtocol()
    assert protocol.name == "ping"
    assert protocol.uses_ping is True


@pytest.mark.parametrize("message", FRAMES)
def test_messages_pass_through_unchanged(message: str | bytes) -> None:
    frame = PingProtocol().encode(message)
    assert frame == message
    assert type(frame) is type(message)  # str stays text, bytes binary


@pytest.mark.parametrize("message", [1, None, {"a": 1}, ["x"], bytearray(b"x"), 1.5])
def test_anything_but_str_or_bytes_is_a_type_error(message: Any) -> None:
    with pytest.raises(TypeError, match=f"sends str or bytes, not {type(message).__name__}"):
        PingProtocol().encode(message)


@pytest.mark.parametrize("frame", FRAMES)
def test_each_frame_is_one_message_and_nothing_else(frame: str | bytes) -> None:
    decoded = PingProtocol().decode(frame)
    assert decoded == [Decoded(message=frame)]
    item = decoded[0]
    assert (item.message_id, item.ack, item.reply) == (None, None, None)


@pytest.mark.parametrize("frame", FRAMES)
def test_the_fast_path_agrees_with_decode(frame: str | bytes) -> None:
    protocol = PingProtocol()
    assert isinstance(protocol, SimpleDecoder)
    simple = protocol.decode_simple(frame)
    assert simple == (frame, None)
    message, message_id = simple
    assert protocol.decode(frame) == [Decoded(message=message, message_id=message_id)]


def test_there_is_no_app_level_heartbeat() -> None:
    with pytest.raises(NotImplementedError, match="ping frame"):
        PingProtocol().heartbeat()


@pytest.mark.anyio
async def test_there_is_no_registration() -> None:
    assert await PingProtocol().prepare(None) is None
