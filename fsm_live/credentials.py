"""Credentials: a redacting secret type and the provider interface.

A :class:`Secret` never shows its value in ``repr``, ``str`` or f-strings; call
:meth:`Secret.reveal` at the one place that must send it.  A
:class:`CredentialsProvider` supplies handshake headers (Cookie, Authorization),
refreshes them after an auth failure, and escalates (e.g. re-login) when the
connection went FAILED.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import attrs

__all__ = ("CredentialsProvider", "Secret", "StaticCredentials")


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
