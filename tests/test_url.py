"""fsm_live.transport.url: URLs checked once (ConfigError naming the part that is
wrong) and shown without secrets (display_url for errors, safe_url for logs)."""

from __future__ import annotations

import pytest

import fsm_live
from fsm_live.errors import ConfigError
from fsm_live.transport.url import HIDDEN, check_url, display_url, safe_url

SECRET = "s3cr3t-pw"
TOKEN = "t0k3n-value"


# -- check_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:8765/",
        "wss://example.com",
        "wss://example.com:443/feed?x=1",
        "ws://user:pw@host/path",
        "ws://[::1]:8080/",
        "ws://h:1/",
        "ws://h:65535/",
        "ws://h/caf%C3%A9?q=a%20b&r=~_.-!$'()*+,;=:@/",
        "ws://h/café",  # an IRI: websockets percent-encodes it (RFC 3987)
    ],
)
def test_a_dialable_url_is_returned_unchanged(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://example.com/", "expected a ws:// or wss:// URL"),
        ("example.com:80", "expected a ws:// or wss:// URL"),
        ("", "expected a ws:// or wss:// URL"),
        ("ws:///path", "no host"),
        ("ws://h:0/", "the port must be a number from 1 to 65535, got '0'"),
        ("ws://h:65536/", "the port must be a number from 1 to 65535, got '65536'"),
        ("ws://h:abc/", "the port must be a number from 1 to 65535, got 'abc'"),
        ("ws://h:-1/", "the port must be a number from 1 to 65535, got '-1'"),
        ("ws://h/#top", "a fragment (#...) means nothing in a WebSocket URL"),
        ("ws://h/#", "a fragment (#...) means nothing in a WebSocket URL"),
        ("ws://[::1/", "not a URL"),
        (
            "ws://127.0.0.1:8801/a b",
            "a space at position 22 is not allowed in a URL (write it as %20)",
        ),
        ("ws://h/a|b", "'|' at position 9 is not allowed in a URL (write it as %7C)"),
        ('ws://h/"x"', "'\"' at position 8 is not allowed in a URL (write it as %22)"),
        (
            "ws://h/a\tb",
            "the character U+0009 at position 9 is not allowed in a URL (write it as %09)",
        ),
        ("ws://h/a\u00a0b", "the character U+00A0 at position 9 is not allowed in a URL"),
        ("ws://h/100%", "'%' at position 11 starts no escape"),
        ("ws://h/%zz", "'%' at position 8 starts no escape"),
        ("ws://alice@h/", "username provided without password"),
    ],
)
def test_an_undialable_url_is_a_config_error_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_url(url)
    assert caught.value.field == "url"
    assert str(caught.value).startswith(f"url: {display_url(url)!r}: {problem}")
    assert isinstance(caught.value, ValueError)


def test_the_error_shows_the_url_as_typed_with_secrets_hidden() -> None:
    url = f"http://alice:{SECRET}@example.com:8080/feed?token={TOKEN}&v=2"
    with pytest.raises(ConfigError) as caught:
        check_url(url, field="--url")
    message = str(caught.value)
    assert caught.value.field == "--url"
    assert message.startswith(f"--url: {display_url(url)!r}: ")
    assert SECRET not in message
    assert TOKEN not in message
    assert "alice" in message
    assert "example.com:8080/feed" in message


@pytest.mark.parametrize(
    ("url", "part"),
    [
        (f"ws://alice:{SECRET} x@h/", "user info"),
        (f"ws://alice:{SECRET}%zz@h/", "user info"),
        (f"ws://h/feed?token={TOKEN} x", "query"),
        (f"ws://h/feed?token={TOKEN}%", "query"),
    ],
)
def test_a_bad_character_among_secrets_names_the_part_only(url: str, part: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_url(url)
    message = str(caught.value)
    assert f"the {part} holds " in message
    assert "position" not in message
    assert SECRET not in message
    assert TOKEN not in message


def test_user_info_that_is_not_utf8_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        check_url(f"ws://alice:{SECRET}%ff@h/")
    assert "not valid percent-encoded UTF-8" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("value", [None, 8765, b"ws://h/", ["ws://h/"]])
def test_a_non_string_names_its_type(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        check_url(value, field="target")
    assert str(caught.value) == (
        f"target: expected a ws:// or wss:// URL, got {type(value).__name__}"
    )


# -- display_url -------------------------------------------------------------------------


def test_display_url_hides_the_password_and_query_values() -> None:
    assert display_url(f"wss://alice:{SECRET}@h:9/p?token={TOKEN}&flag&v=") == (
        f"wss://alice:{HIDDEN}@h:9/p?token={HIDDEN}&flag&v={HIDDEN}"
    )
    assert HIDDEN == "***"


def test_display_url_keeps_what_is_not_secret() -> None:
    for url in (
        "ws://127.0.0.1:8765/",
        "wss://user@example.com/a/b",
        "ws://[::1]:80/x",
        "ws://h/path#frag",
    ):
        assert display_url(url) == url


def test_display_url_hides_a_password_containing_at_and_colon() -> None:
    shown = display_url("ws://bob:p@ss:w0rd@host/")
    assert shown == f"ws://bob:{HIDDEN}@host/"


def test_display_url_hides_a_query_value_containing_equals() -> None:
    assert display_url(f"ws://h/?sig={TOKEN}==") == f"ws://h/?sig={HIDDEN}"


@pytest.mark.parametrize("url", ["", "not a url", "ws://[::1/?token=x", "::::", "ws://h:x/"])
def test_display_url_never_raises(url: str) -> None:
    assert isinstance(display_url(url), str)


def test_display_url_drops_the_query_of_an_unparsable_url() -> None:
    assert TOKEN not in display_url(f"ws://[::1/?token={TOKEN}")


def test_display_url_hides_the_password_of_an_unparsable_url() -> None:
    assert SECRET not in display_url(f"ws://alice:{SECRET}@[::1/")


# -- safe_url ----------------------------------------------------------------------------


def test_safe_url_keeps_scheme_host_port_and_path_only() -> None:
    url = f"wss://alice:{SECRET}@Example.com:8443/feed/v1?token={TOKEN}#part"
    assert safe_url(url) == "wss://example.com:8443/feed/v1"  # hostname is lower-cased
    assert safe_url("ws://h/") == "ws://h/"
    assert safe_url("ws://h") == "ws://h"


@pytest.mark.parametrize(
    "url", [f"ws://u:{SECRET}@h:99999/", f"ws://u:{SECRET}@h:x/", f"ws://u:{SECRET}@[::1/"]
)
def test_safe_url_of_an_invalid_url_shows_nothing(url: str) -> None:
    assert safe_url(url) == "<invalid URL>"


@pytest.mark.parametrize("url", ["", "no scheme", "ws://", "://", "ws://h:0"])
def test_safe_url_never_raises(url: str) -> None:
    assert isinstance(safe_url(url), str)


def test_safe_url_keeps_an_ipv6_host_in_brackets() -> None:
    assert safe_url("ws://[::1]:8080/x") == "ws://[::1]:8080/x"


@pytest.mark.parametrize("host", ["bad..host", "a" * 64 + ".example"])
def test_a_host_name_that_cannot_be_looked_up_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a host name"):
        check_url(f"ws://{host}/")


def test_an_ipv6_address_is_a_host() -> None:
    assert check_url("ws://[::1]:8080/") == "ws://[::1]:8080/"


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8801/a b", "ws://alice@127.0.0.1:8801/"])
def test_the_api_refuses_a_url_it_could_never_dial(url: str) -> None:
    # Refused when the connection is made: it never starts, never retries.
    with pytest.raises(ConfigError):
        fsm_live.connect(url)
