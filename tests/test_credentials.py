"""Secrets stay secret; cookies parse; the unb cookie is required and named, not shown."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping

import anyio
import pytest

from fsm_live.credentials import Secret, StaticCredentials, cookie_header, parse_cookies
from fsm_live.errors import ConfigError
from fsm_live.lwp.credentials import CookieCredentials, new_device_id

pytestmark = pytest.mark.anyio


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2")
    for text in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % (secret,),  # noqa: UP031
        repr([secret]),
        repr({"token": secret}),
    ):
        assert "hunter2" not in text
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2")
    assert secret != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_parse_cookies_tolerates_spaces() -> None:
    cookies = parse_cookies(" unb = 42 ;cna=abc==; ;_tb_token_=x y")
    assert {k: v.reveal() for k, v in cookies.items()} == {
        "unb": "42",
        "cna": "abc==",
        "_tb_token_": "x y",
    }
    assert cookie_header(cookies).reveal() == "unb=42; cna=abc==; _tb_token_=x y"


def test_malformed_cookie_names_position_not_text() -> None:
    with pytest.raises(ConfigError, match="pair 2 is not name=value") as caught:
        parse_cookies("unb=1; s3cr3tvalue")
    assert "s3cr3t" not in str(caught.value)


async def no_token(cookies: Mapping[str, Secret]) -> Secret:
    raise AssertionError("not called")


def test_missing_unb_lists_names_never_values() -> None:
    with pytest.raises(ConfigError, match=r"'unb' cookie is required \(found: cna, t\)") as c:
        CookieCredentials("cna=VALUE1; t=VALUE2", token_source=no_token)
    assert "VALUE" not in str(c.value)


def test_device_id_shape_and_repr() -> None:
    device = new_device_id("42")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}-42", device
    )
    assert new_device_id("42") != device
    credentials = CookieCredentials("unb=SECRETUNB; x=SECRETX", token_source=no_token)
    assert "SECRET" not in repr(credentials)
    assert credentials.cookie_names == ["unb", "x"]


async def test_token_refresh_and_cookie_refresh() -> None:
    tokens = iter(["t1", "t1", "t2"])

    async def token_source(cookies: Mapping[str, Secret]) -> Secret:
        return Secret(next(tokens))

    async def cookie_source(cookies: Mapping[str, Secret]) -> Mapping[str, Secret]:
        return {**cookies, "fresh": Secret("1")}

    credentials = CookieCredentials("unb=1", token_source=token_source, cookie_source=cookie_source)
    with anyio.fail_after(5):
        assert (await credentials.access_token()).reveal() == "t1"
        assert not await credentials.refresh_token()  # same token
        assert await credentials.refresh()  # a new one
        assert await credentials.refresh_cookies()
        header = (await credentials.handshake_headers())["Cookie"]
        assert header.reveal() == "unb=1; fresh=1"
        assert not await credentials.escalate()


async def test_static_credentials() -> None:
    credentials = StaticCredentials({"Authorization": Secret("Bearer x")})
    with anyio.fail_after(5):
        assert await credentials.handshake_headers() == {"Authorization": Secret("Bearer x")}
        assert not await credentials.refresh()
        assert not await credentials.escalate()
