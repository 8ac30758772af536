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

from urllib.parse import SplitResult, urlsplit

from fsm_live.errors import ConfigError

__all__ = ("HIDDEN", "check_url", "display_url", "is_host_name", "safe_url")

#: What replaces a password or a query value when a URL is shown.
HIDDEN = "***"
_SCHEMES = ("ws", "wss")


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
    from 1 to 65535, a fragment.
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
    return url


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
