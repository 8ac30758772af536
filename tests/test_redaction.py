"""fsm_live.transport.redaction: websockets' DEBUG lines keep header names, the request
path, the status code, frame types and sizes; values go.  A peer's text is cut and
escaped by ``peer_text``.

tests/test_secrets.py hunts canaries through a whole lifecycle; this module checks the
logger itself: each line shape, and websockets' own Sans-I/O handshake and frames
logged through it (so a websockets release that changes its log lines is noticed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from fsm_live.transport.redaction import PEER_TEXT_LIMIT, REDACTED, peer_text, redacting_logger

TOKEN = "tok-8d1f0c"
COOKIE = "cookie-5b2e77"
NAME = "fsm_live.tests.redaction"


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=NAME)
    return caplog


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_it_wraps_the_named_logger() -> None:
    adapter = redacting_logger("websockets.client")
    assert adapter.logger is logging.getLogger("websockets.client")
    assert REDACTED == "[redacted]"


def test_header_values_go_both_ways(debug: pytest.LogCaptureFixture) -> None:
    log = redacting_logger(NAME)
    log.debug("> %s: %s", "Authorization", f"Bearer {TOKEN}")
    log.debug("< %s: %s", "Set-Cookie", f"sid={COOKIE}")
    assert messages(debug) == ["> Authorization: [redacted]", "< Set-Cookie: [redacted]"]


def test_the_request_lines_keep_the_path_and_lose_the_query(
    debug: pytest.LogCaptureFixture,
) -> None:
    log = redacting_logger(NAME)
    log.debug("> GET %s HTTP/1.1", f"/feed?token={TOKEN}&v=2")
    log.debug("> GET %s HTTP/1.1", "/plain")
    log.debug("< %s %s %s", "GET", f"/feed?token={TOKEN}", "HTTP/1.1")
    assert messages(debug) == [
        "> GET /feed?[redacted] HTTP/1.1",
        "> GET /plain HTTP/1.1",
        "< GET /feed?[redacted] HTTP/1.1",
    ]


def test_frames_keep_their_type_and_size(debug: pytest.LogCaptureFixture) -> None:
    log = redacting_logger(NAME)
    log.debug("> %s", Frame(Opcode.TEXT, f'{{"token":"{TOKEN}"}}'.encode()))
    log.debug("< %s", Frame(Opcode.BINARY, TOKEN.encode()))
    assert messages(debug) == [
        f"> TEXT [{len(TOKEN) + 12} bytes]",
        f"< BINARY [{len(TOKEN)} bytes]",
    ]


def test_the_status_line_keeps_the_code_and_loses_the_reason_phrase(
    debug: pytest.LogCaptureFixture,
) -> None:
    """The reason phrase is the server's own text: it may echo the request's Cookie."""
    log = redacting_logger(NAME)
    log.debug("< HTTP/1.1 %d %s", 101, f"Switching Protocols sid={COOKIE}")
    log.debug("< HTTP/1.1 %d %s", 403, "Forbidden")
    assert messages(debug) == ["< HTTP/1.1 101 [redacted]", "< HTTP/1.1 403 [redacted]"]


def test_other_lines_pass_unchanged(debug: pytest.LogCaptureFixture) -> None:
    log = redacting_logger(NAME)
    log.debug("= connection is %s", "OPEN")
    log.debug("> %s", "EOF")  # a frame line whose argument is not a Frame
    log.debug("no arguments: %s")
    assert messages(debug) == ["= connection is OPEN", "> EOF", "no arguments: %s"]


# -- peer_text ---------------------------------------------------------------------------------


def test_peer_text_keeps_short_text_as_it_is() -> None:
    assert peer_text("nope") == "nope"
    assert peer_text(403) == "403"
    assert peer_text(None) == "None"
    assert peer_text({"a": [1, 2]}) == "{'a': [1, 2]}"


def test_peer_text_cuts_long_text_and_says_how_long_it_was() -> None:
    shown = peer_text("A" * 500_000)
    assert shown == "A" * PEER_TEXT_LIMIT + "... (500000 characters)"
    assert peer_text("abcdef", limit=3) == "abc... (6 characters)"


def test_peer_text_escapes_control_characters() -> None:
    """A peer must not write log lines of its own (a line break) or drive a terminal
    (an escape sequence, a bidirectional override)."""
    assert peer_text("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert peer_text("\x1b[2J\x07\x7f\x9b") == "\\x1b[2J\\x07\\x7f\\x9b"
    assert peer_text("x\u202ey") == "x\\u202ey"
    assert peer_text("é ü 中") == "é ü 中"  # printable text stays
    # Escapes that make the text longer than the limit cut it too:
    assert peer_text("\x00" * 10, limit=8) == "\\x00\\x00... (10 characters)"


def test_peer_text_shows_deep_or_huge_values_without_recursing() -> None:
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    assert peer_text(nested) == "[[[[[...]]]]]"
    shown = peer_text(list(range(1_000_000)))
    assert shown == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"


def test_peer_text_never_raises() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert peer_text(Hostile()).startswith("<")


def test_nothing_is_logged_below_the_loggers_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=NAME)
    redacting_logger(NAME).debug("> %s: %s", "Cookie", COOKIE)
    assert not caplog.records


def test_a_websockets_handshake_and_frames_logged_through_it_keep_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("websockets.client", "websockets.server"):
        caplog.set_level(logging.DEBUG, logger=name)
    client = ClientProtocol(
        parse_uri(f"ws://example.com/feed?token={TOKEN}"),
        logger=redacting_logger("websockets.client"),
    )
    server = ServerProtocol(logger=redacting_logger("websockets.server"))
    request = client.connect()
    request.headers["Cookie"] = f"sid={COOKIE}"
    client.send_request(request)
    server.receive_data(b"".join(client.data_to_send()))
    [handshake] = server.events_received()
    assert isinstance(handshake, Request)
    response = server.accept(handshake)
    response.headers["Set-Cookie"] = f"sid={COOKIE}"
    server.send_response(response)
    client.receive_data(b"".join(server.data_to_send()))
    client.send_text(f"token={TOKEN}".encode())
    server.receive_data(b"".join(client.data_to_send()))
    [frame] = server.events_received()
    assert isinstance(frame, Frame)
    assert frame.data == f"token={TOKEN}".encode()

    text = "\n".join(messages(caplog))
    assert TOKEN not in text
    assert COOKIE not in text
    # What stays: the path, header names, frame types and sizes.
    assert "> GET /feed?[redacted] HTTP/1.1" in text
    assert "< GET /feed?[redacted] HTTP/1.1" in text
    assert "> Cookie: [redacted]" in text
    assert "< Cookie: [redacted]" in text
    assert "> Set-Cookie: [redacted]" in text
    assert "< Set-Cookie: [redacted]" in text
    assert f"TEXT [{len(TOKEN) + 6} bytes]" in text


def test_a_record_names_the_line_that_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fsm_live.test.redaction")
    redacting_logger("fsm_live.test.redaction").debug("> %s: %s", "Cookie", "session=1")
    (record,) = caplog.records
    assert record.filename == Path(__file__).name
