"""Cookies texts, cookies files and lwp credentials, shared by ``fsm-live connect`` and fleet
files; tokens are fetched from a real local lwp server (asyncio, 127.0.0.1, port 0)."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from fsm_live.credentials import Secret
from fsm_live.errors import ConfigError
from fsm_live.lwp.credentials import (
    CookieCredentials,
    lwp_credentials,
    parse_cookie_text,
    read_cookies_file,
)
from fsm_live.lwp.server import LwpServer
from fsm_live.lwp.token import TokenFetchFailed

pytestmark = pytest.mark.timeout(20)

CANARY = "s3cr3t-canary-8086"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # LwpServer runs websockets' asyncio server


def test_a_cookies_text_takes_semicolons_and_lines() -> None:
    cookies = parse_cookie_text(Secret(f"unb=1; cna={CANARY}\r\n\n sid = 2 \n"))
    assert cookies == {"unb": Secret("1"), "cna": Secret(CANARY), "sid": Secret("2")}
    assert parse_cookie_text(Secret("")) == {}
    with pytest.raises(ConfigError) as caught:
        parse_cookie_text(Secret(f"unb=1\n{CANARY}"))
    assert str(caught.value) == "cookies: pair 2 is not name=value"  # counted across lines


def test_read_cookies_file(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text(f"unb=1\ncna={CANARY}\n", encoding="utf-8")
    assert read_cookies_file(path, field="--cookies-file") == Secret(f"unb=1\ncna={CANARY}\n")
    with pytest.raises(ConfigError) as caught:
        read_cookies_file(tmp_path / "missing.txt", field="here")
    assert str(caught.value) == (
        f"here: cannot read {tmp_path / 'missing.txt'}: No such file or directory"
    )
    path.write_bytes(b"unb=\xff")
    with pytest.raises(ConfigError, match=r"^here: .*c\.txt is not UTF-8 text$"):
        read_cookies_file(path, field="here")


@pytest.mark.parametrize(
    ("cookies", "token_url", "url", "message"),
    [
        (
            f"cna={CANARY}",
            None,
            "ws://127.0.0.1:1/",
            "cookies: the 'unb' cookie is required (found: cna)",
        ),
        (f"unb=1; {CANARY}", None, "ws://127.0.0.1:1/", "cookies: pair 2 is not name=value"),
        (
            f"unb={CANARY}",
            "ftp://127.0.0.1/token",
            "ws://127.0.0.1:1/",
            "token_url: expected an http:// or https:// URL",
        ),
        (
            f"unb={CANARY}",
            None,
            "http://127.0.0.1:1/",
            "url: expected a ws:// or wss:// URL to derive the token URL from",
        ),
    ],
    ids=["no-unb", "bad-pair", "token-url-not-http", "url-not-ws"],
)
def test_lwp_credentials_errors_never_show_a_value(
    cookies: str, token_url: str | None, url: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        lwp_credentials(Secret(cookies), url=url, token_url=token_url)
    assert str(caught.value) == message


def _refused_port() -> tuple[socket.socket, int]:
    """A bound socket that does not listen (connecting to it is refused), and its port."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    return bound, bound.getsockname()[1]


@pytest.mark.anyio
async def test_tokens_come_from_token_url_by_default_that_of_the_url() -> None:
    bound, refused = _refused_port()
    with bound, anyio.fail_after(10):
        async with LwpServer(push_interval=None) as server:
            by_default = lwp_credentials(Secret(f"unb=77\ncna={CANARY}"), url=server.url)
            assert isinstance(by_default, CookieCredentials)
            assert by_default.user_id == Secret("77")
            assert (await by_default.access_token()).reveal()
            # The WebSocket URL refuses; the token URL given is the one asked.
            given = lwp_credentials(
                {"unb": Secret("78")}, url=f"ws://127.0.0.1:{refused}/", token_url=server.token_url
            )
            assert (await given.access_token()).reveal()
            assert server.stats().tokens_issued == 2
            # Without token_url, the default is derived from the URL, which refuses.
            derived = lwp_credentials(Secret(f"unb={CANARY}"), url=f"ws://127.0.0.1:{refused}/x")
            with pytest.raises(TokenFetchFailed) as caught:
                await derived.access_token()
            assert str(caught.value).startswith(
                f"token endpoint http://127.0.0.1:{refused}/token: cannot connect ("
            )
            assert server.stats().tokens_issued == 2
    assert CANARY not in repr(by_default) + repr(derived)
