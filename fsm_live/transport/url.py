"""WebSocket URLs: checked once, when a connection is made, and shown without secrets.

:func:`display_url` is the URL as typed with its password and query values hidden
(for error messages about it); :func:`safe_url` only its scheme, host, port and
path (for logs and reprs).

:func:`check_url` accepts what a client can dial (RFC 6455 section 3: ``ws://`` or
``wss://``, a host, an optional port from 1 to 65535, no fragment) and raises
:class:`~fsm_live.errors.ConfigError` naming the part that is wrong and the URL as
the user typed it, secrets hidden (:func:`display_url`).  Nothing later has to
cope with a URL that cannot be dialled.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Final
from urllib.parse import SplitResult, urlsplit

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from fsm_live.errors import ConfigError

__all__ = ("HIDDEN", "check_url", "display_url", "is_host_name", "safe_url")

#: What replaces a password or a query value when a URL is shown.
HIDDEN = "***"
_SCHEMES = ("ws", "wss")
#: The ASCII characters a URI may hold (RFC 3986 section 2: unreserved, reserved, and
#: "%" for escapes).  Other ASCII characters (space, controls, ``"<>\\^`{|}``) would
#: reach the handshake's request line as they are, which a server refuses: a URL with
#: one is refused here.  Characters beyond ASCII are allowed (an IRI: websockets
#: encodes them, RFC 3987) unless they are spaces or controls.
_URI_CHARACTERS: Final = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def display_url(url: str) -> str:
    """``url`` as typed, with the password of its user info and the values of its
    query replaced by ``***`` (they may be credentials).  Never raises."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (an unbalanced [): hide whatever could be a secret
        scheme, sep, rest = url.rpartition("://")
        user, at, host = rest.partition("?")[0].rpartition("@")
        if at and ":" in user:
            user = f"{user.partition(':')[0]}:{HIDDEN}"
        return f"{scheme}{sep}{user}{at}{host}"
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.partition(':')[0]}:{HIDDEN}@{host}"
    query = (
        "&".join(
            f"{pair.partition('=')[0]}={HIDDEN}" if "=" in pair else pair
            for pair in parts.query.split("&")
        )
        if parts.query
        else ""
    )
    return SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment).geturl()


def check_url(url: object, *, field: str = "url") -> str:
    """Return ``url`` if a WebSocket client can dial it; raise ConfigError otherwise.

    The error names ``field``, the URL as typed (:func:`display_url`) and what is
    wrong: not a string, the scheme, a missing host, a port that is not a number
    from 1 to 65535, a fragment, a character a URL cannot hold (a space, a control,
    one of ``"<>\\^`{|}``: the error says where, and how to escape it), a ``%``
    that starts no escape, or what websockets' ``parse_uri`` refuses (a user name
    without a password).
    """
    if not isinstance(url, str):
        raise ConfigError(field, f"expected a ws:// or wss:// URL, got {type(url).__name__}")
    shown = display_url(url)

    def bad(problem: str) -> ConfigError:
        return ConfigError(field, f"{shown!r}: {problem}")

    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host
        raise bad("not a URL") from None
    if parts.scheme not in _SCHEMES:
        raise bad("expected a ws:// or wss:// URL (e.g. ws://127.0.0.1:8765/)")
    if not parts.hostname:
        raise bad("no host")
    if not is_host_name(parts.hostname):
        raise bad(f"{parts.hostname!r} is not a host name (an empty or over-long label)")
    try:
        port = parts.port
    except ValueError:
        text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise bad(f"the port must be a number from 1 to 65535, got {text!r}") from None
    if port == 0:
        raise bad("the port must be a number from 1 to 65535, got '0'")
    if parts.fragment or url.endswith("#"):
        raise bad("a fragment (#...) means nothing in a WebSocket URL")
    # Where secrets may be (the user info, the query): say which part, never the
    # character or its position.
    start = url.index("//") + 2
    secret = range(start, start + parts.netloc.rfind("@") + 1)
    query = url.find("?")
    for index, char in enumerate(url):
        if not _not_in_a_url(char):
            continue
        if index in secret or 0 <= query < index:
            part = "user info" if index in secret else "query"
            raise bad(f"the {part} holds a character not allowed in a URL (percent-encode it)")
        raise bad(
            f"{_character(char)} at position {index + 1} is not allowed in a URL "
            f"(write it as {_escaped(char)})"
        )
    if (escape := _BAD_ESCAPE.search(url)) is not None:
        index = escape.start()
        if index in secret or 0 <= query < index:
            part = "user info" if index in secret else "query"
            raise bad(f"the {part} holds a '%' that starts no escape (write '%' as %25)")
        raise bad(
            f"'%' at position {index + 1} starts no escape (two hex digits follow "
            "'%'; write a '%' itself as %25)"
        )
    try:
        parse_uri(url)  # what the client will do with it, so that it never fails later
    except InvalidURI as exc:
        raise bad(exc.msg) from None
    except UnicodeError:  # the user info's escapes are not UTF-8
        raise bad("the user name or password is not valid percent-encoded UTF-8") from None
    return url


def _not_in_a_url(char: str) -> bool:
    if char.isascii():
        return char not in _URI_CHARACTERS
    return unicodedata.category(char)[0] in "CZ"  # controls, format marks, spaces


def _character(char: str) -> str:
    if char == " ":
        return "a space"
    if char.isascii() and char.isprintable():
        return repr(char)
    return f"the character U+{ord(char):04X}"


def _escaped(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


def is_host_name(host: str) -> bool:
    """True if ``host`` (an IP address, or a name) can be looked up: its IDNA form
    (RFC 5891) exists, which an empty or over-long label forbids."""
    if ":" in host:  # an IPv6 address, in brackets in the URL
        return True
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (they may carry secrets).  Never raises."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not a URL, or a bad port: show nothing that could be a secret
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets (RFC 3986 section 3.2.2)
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}{parts.path}"
