"""The token fetch over HTTP: URLs, answers, failures that never show a cookie."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from servers import raw_server, say_nothing

from fsm_live.credentials import parse_cookies
from fsm_live.errors import ConfigError
from fsm_live.lwp.token import (
    MAX_RESPONSE,
    HttpTokenSource,
    TokenFetchFailed,
    fetch_token,
    token_url_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

CANARY = "cookie-canary-5150"
COOKIES = parse_cookies(f"unb=9; sid={CANARY}")


class Answering:
    """A raw-server handler: read the request, keep it, send ``answer``, close."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests: list[bytes] = []

    async def __call__(self, stream: anyio.abc.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
        self.requests.append(data)
        await stream.send(self.answer)


def test_token_url_for_a_websocket_url() -> None:
    assert token_url_for("ws://127.0.0.1:8765/ws?x=1") == "http://127.0.0.1:8765/token"
    assert token_url_for("wss://user:pw@example.org/") == "https://example.org/token"
    with pytest.raises(ConfigError, match="url: expected a ws:// or wss:// URL"):
        token_url_for("http://example.org/")
    with pytest.raises(ConfigError, match="token_url: expected an http:// or https:// URL"):
        HttpTokenSource("ftp://example.org/token")


async def test_a_token_answer_and_the_request_sent() -> None:
    handler = Answering(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b'Content-Length: 17\r\n\r\n{"token": "t-42"}'
    )
    async with raw_server(handler) as server:
        with anyio.fail_after(5):
            token = await fetch_token(f"http://127.0.0.1:{server.port}/token?v=1", COOKIES)
    assert token.reveal() == "t-42"
    [request] = handler.requests
    assert request.startswith(b"GET /token?v=1 HTTP/1.1\r\n")
    assert f"Cookie: unb=9; sid={CANARY}\r\n".encode() in request


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "answered HTTP 403"),
        (b"HTTP/1.1 200 OK\r\n\r\nnot json", "the answer is not JSON"),
        (b'HTTP/1.1 200 OK\r\n\r\n{"token": 5}', "the answer has no 'token' string"),
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * MAX_RESPONSE, "answer larger than"),
    ],
)
async def test_bad_answers_are_clear_errors_without_secrets(answer: bytes, problem: str) -> None:
    async with raw_server(Answering(answer)) as server:
        with anyio.fail_after(5), pytest.raises(TokenFetchFailed) as caught:
            await fetch_token(f"http://127.0.0.1:{server.port}/token", COOKIES)
    assert str(caught.value).startswith(
        f"token endpoint http://127.0.0.1:{server.port}/token: {problem}"
    )
    assert CANARY not in str(caught.value)


async def test_unreachable_and_silent_endpoints() -> None:
    async with raw_server(say_nothing) as server:
        url = f"http://127.0.0.1:{server.port}/token"
    with anyio.fail_after(5), pytest.raises(TokenFetchFailed, match="cannot connect"):
        await fetch_token(url, COOKIES)  # the server is gone: refused
    async with raw_server(say_nothing) as server:
        source = HttpTokenSource(f"http://user:pw@127.0.0.1:{server.port}/token", timeout=0.2)
        with anyio.fail_after(5), pytest.raises(TokenFetchFailed) as caught:
            await source(COOKIES)
    assert str(caught.value) == (
        f"token endpoint http://127.0.0.1:{server.port}/token: no answer within 0.2 s"
    )
    assert "pw" not in repr(source)
