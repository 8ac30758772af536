"""Credentials: a redacting secret type and the provider interface.

A :class:`Secret` never shows its value in ``repr``, ``str`` or f-strings; call
:meth:`Secret.reveal` at the one place that must send it.  A
:class:`CredentialsProvider` supplies handshake headers (Cookie, Authorization),
refreshes them after an auth failure, and escalates (e.g. re-login) when the
connection went FAILED.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import attrs

from fsm_live.errors import ConfigError, CredentialsRejected, FsmLiveError, TransportError

__all__ = (
    "CredentialsProvider",
    "Secret",
    "StaticCredentials",
    "cookie_header",
    "parse_cookies",
    "provider_errors",
)


class Secret:
    """A string that is redacted wherever it might be printed or logged."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret value.  Call it only where the value is sent, never to log it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not serialised")

    def __bool__(self) -> bool:
        return bool(self._value)


_logger = logging.getLogger("fsm_live")


@runtime_checkable
class CredentialsProvider(Protocol):
    """Where a connection's credentials come from."""

    async def handshake_headers(self) -> Mapping[str, Secret]:
        """Headers for the next WebSocket handshake (e.g. ``Cookie``)."""
        ...

    async def refresh(self) -> bool:
        """Called once after an auth failure, before the one retry.  True if refreshed."""
        ...

    async def escalate(self) -> bool:
        """Called in FAILED (e.g. re-login).  True means: reset the failure count and retry."""
        ...


@contextlib.contextmanager
def provider_errors() -> Iterator[None]:
    """Around a call into a credentials provider while a connection is set up: its
    own exception becomes a :class:`~fsm_live.errors.TransportError` of kind
    ``credentials`` (the spec classes it as a server failure: backoff, then retry),
    or ``credentials_rejected`` for a :class:`~fsm_live.errors.CredentialsRejected`
    (its source refused them: the connection goes FAILED, no retry hammers it).

    The error (which reaches stats, traces and the transition log) names the
    exception's type, plus its message only for fsm_live's own errors, whose
    messages are free of secrets by contract.  The traceback is logged once on
    ``fsm_live`` at WARNING for diagnosis: a provider must not put secrets in its
    own exception messages.  TransportError passes through.
    """
    try:
        yield
    except TransportError:
        raise
    except Exception as exc:
        _logger.warning(
            "credentials provider raised %s; the attempt fails", type(exc).__name__, exc_info=exc
        )
        detail = f": {exc}" if isinstance(exc, FsmLiveError) else ""
        kind = "credentials_rejected" if isinstance(exc, CredentialsRejected) else "credentials"
        raise TransportError(
            f"credentials provider raised {type(exc).__name__}{detail}", kind=kind
        ) from exc


@attrs.frozen
class StaticCredentials:
    """Fixed handshake headers that cannot be refreshed (refresh and escalate say False)."""

    headers: Mapping[str, Secret] = attrs.field(factory=dict)

    async def handshake_headers(self) -> Mapping[str, Secret]:
        return self.headers

    async def refresh(self) -> bool:
        return False

    async def escalate(self) -> bool:
        return False


def parse_cookies(text: str | Secret) -> dict[str, Secret]:
    """``name=value`` pairs separated by ``;`` (spaces tolerated), values as Secrets.

    Raises :class:`ConfigError` for a pair without ``=`` (naming its position,
    never its text) or an empty name.
    """
    raw = text.reveal() if isinstance(text, Secret) else text
    cookies: dict[str, Secret] = {}
    for position, part in enumerate(raw.split(";"), start=1):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError("cookies", f"pair {position} is not name=value")
        cookies[name.strip()] = Secret(value.strip())
    return cookies


def cookie_header(cookies: Mapping[str, Secret]) -> Secret:
    """The ``Cookie`` header value for these cookies."""
    return Secret("; ".join(f"{name}={value.reveal()}" for name, value in cookies.items()))
