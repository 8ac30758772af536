"""The credential work a connection awaits, each call's outcome as a value.

The engine runs these as jobs (:mod:`fsm_live._runtime.jobs`) and reports what
they return to the core as events; when each runs is the core's decision
(:mod:`fsm_live.core.renewal`, the lifecycle's auth policy).  A provider is any
:class:`~fsm_live.credentials.CredentialsProvider`; refreshing by age needs the
optional methods of :class:`TokenRefresher` and :class:`CookieRefresher`.

What a provider raises is translated once, here: while a connection is set up
(:func:`handshake_headers`, :func:`refresh_auth`) into a
:class:`~fsm_live.errors.TransportError` the spec classifies (kind
``credentials``: its source is down, try again later; ``credentials_rejected``:
its source refused the credentials, e.g. HTTP 401 from a token endpoint, which
no retry fixes); elsewhere (a refresh by age, the escalation) into a logged
warning and a failed outcome.  Messages name the exception's type only (a
provider's own message might quote a secret).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from fsm_live.credentials import CredentialsProvider, Secret, provider_errors

__all__ = (
    "CookieRefresher",
    "Outcome",
    "TokenRefresher",
    "escalate",
    "handshake_headers",
    "refresh_auth",
    "refresh_cookies",
    "refresh_token",
)

logger = logging.getLogger("fsm_live")


@runtime_checkable
class TokenRefresher(Protocol):
    """A credentials provider that can refresh its access token."""

    async def refresh_token(self) -> bool:
        """Refresh; True if the token changed (an open connection rotates to apply it)."""
        ...


@runtime_checkable
class CookieRefresher(Protocol):
    """A credentials provider that can refresh its cookies."""

    async def refresh_cookies(self) -> bool:
        """Refresh; True if the cookies changed (used at the next handshake)."""
        ...


@attrs.frozen
class Outcome:
    """How one call ended: ``ok``; ``changed`` (the credential differs); ``reason``
    (for logs and traces: the exception's type when it raised)."""

    ok: bool
    changed: bool = False
    reason: str = ""


async def handshake_headers(credentials: CredentialsProvider | None) -> dict[str, str]:
    """The provider's headers for the next handshake, revealed for sending.  Raises
    :class:`~fsm_live.errors.TransportError` (kind ``credentials`` or
    ``credentials_rejected``)."""
    if credentials is None:
        return {}
    with provider_errors():
        headers: Mapping[str, Any] = await credentials.handshake_headers()
    return {name: _reveal(value) for name, value in headers.items()}


async def refresh_auth(credentials: CredentialsProvider) -> None:
    """The refresh after an auth failure, before the retry.  Raises
    :class:`~fsm_live.errors.TransportError` when it failed (the attempt fails:
    backoff, and the next dial refreshes again)."""
    with provider_errors():
        await credentials.refresh()


async def refresh_token(credentials: object) -> Outcome:
    """A token refresh by age; a failure is logged (the next try is the core's)."""
    if not isinstance(credentials, TokenRefresher):
        return Outcome(False, reason="the provider cannot refresh a token")
    return await _refresh_by_age("token", credentials.refresh_token)


async def refresh_cookies(credentials: object) -> Outcome:
    """A cookie refresh by age (used at the next handshake); a failure is logged."""
    if not isinstance(credentials, CookieRefresher):
        return Outcome(False, reason="the provider cannot refresh cookies")
    return await _refresh_by_age("cookie", credentials.refresh_cookies)


async def _refresh_by_age(what: str, refresh: Callable[[], Awaitable[bool]]) -> Outcome:
    """``await refresh()``, the ``what`` refresh: what it raised is logged and told in
    the outcome, never raised."""
    try:
        changed = await refresh()
    except Exception as exc:
        logger.warning("%s refresh failed (%s)", what, type(exc).__name__)
        return Outcome(False, reason=f"{what} refresh raised {type(exc).__name__}")
    return Outcome(True, changed=bool(changed))


async def escalate(credentials: CredentialsProvider) -> Outcome:
    """The escalation hook (e.g. re-login)."""
    try:
        ok = await credentials.escalate()
    except Exception as exc:
        logger.warning("credentials escalation raised %s", type(exc).__name__)
        return Outcome(False, reason=f"escalation raised {type(exc).__name__}")
    return Outcome(bool(ok), reason="escalation succeeded" if ok else "escalation did not recover")


def _reveal(value: Secret | str) -> str:
    """A header value as sent: a :class:`Secret` revealed, a plain string as it is."""
    return value.reveal() if isinstance(value, Secret) else str(value)
