"""An account's cookies, read from where they are kept, and its lwp credentials.

``fsm-live connect --protocol lwp`` and fleet files
(:mod:`fsm_live.fleet.config`) both go through these functions, so an account
is read and logged in the same way wherever it is configured:

* a cookies text (a file, an environment variable) holds ``name=value`` pairs
  separated by ``;`` or by line breaks (one cookie per line works too);
* an lwp account's credentials are a
  :class:`CookieCredentials` (its ``unb`` cookie is
  required) whose token source GETs the access token from ``token_url``, by
  default :func:`~fsm_live.lwp.token.token_url_for` of the WebSocket URL (the
  ``/token`` endpoint ``fsm-live serve`` answers).

Every problem is a :class:`~fsm_live.errors.ConfigError` with a generic
``field`` (``cookies``, ``token_url``, ``url``, or the one the caller names)
that callers relocate to their own flag or key.  Messages name files, cookie
names and positions, never a cookie's value or a token.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping

from fsm_live.credentials import Secret, cookie_header, parse_cookies
from fsm_live.errors import ConfigError
from fsm_live.lwp.token import HttpTokenSource, token_url_for

__all__ = (
    "CookieCredentials",
    "lwp_credentials",
    "new_device_id",
    "parse_cookie_text",
    "read_cookies_file",
)

TokenSource = Callable[[Mapping[str, Secret]], Awaitable[Secret]]
CookieSource = Callable[[Mapping[str, Secret]], Awaitable[Mapping[str, Secret]]]
Escalation = Callable[[], Awaitable[bool]]


def read_cookies_file(path: str | os.PathLike[str], *, field: str) -> Secret:
    """The whole text of the cookies file at ``path``, as a :class:`Secret`.

    Raises ``ConfigError(field, ...)`` naming ``path`` when the file cannot be
    read (with the system's reason) or is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8") as file:
            return Secret(file.read())
    except OSError as exc:
        raise ConfigError(
            field, f"cannot read {os.fspath(path)}: {exc.strerror or type(exc).__name__}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(field, f"{os.fspath(path)} is not UTF-8 text") from None


def parse_cookie_text(text: Secret) -> dict[str, Secret]:
    """The cookies of a cookies text: ``name=value`` pairs separated by ``;`` or line
    breaks, in order (an empty text gives none).

    Raises ``ConfigError("cookies", "pair N is not name=value")`` for a malformed
    pair, counting pairs across lines; the pair's text is never shown.
    """
    return parse_cookies(Secret("; ".join(text.reveal().splitlines())))


def lwp_credentials(
    cookies: Secret | Mapping[str, Secret], *, url: str, token_url: str | None = None
) -> CookieCredentials:
    """New credentials for one lwp connection to ``url``.

    ``cookies`` is a cookies text (see :func:`parse_cookie_text`) or cookies
    already parsed; ``token_url`` is where the access token is fetched from
    (:class:`~fsm_live.lwp.token.HttpTokenSource`), by default
    ``token_url_for(url)``.  Each call returns a new provider (its own token and
    device id): one per connection.

    Raises :class:`~fsm_live.errors.ConfigError` with field ``cookies`` for a
    malformed pair or cookies without ``unb`` (naming the cookies found),
    ``token_url`` for a token URL that is not http(s), and ``url`` when no
    ``token_url`` is given and ``url`` is not ws(s).
    """
    parsed = parse_cookie_text(cookies) if isinstance(cookies, Secret) else cookies
    token_source = HttpTokenSource(token_url_for(url) if token_url is None else token_url)
    return CookieCredentials(parsed, token_source=token_source)


def new_device_id(user_id: str) -> str:
    """A UUID4-shaped random string (from :mod:`secrets`), ``-``, and the user id."""
    return f"{uuid.UUID(bytes=secrets.token_bytes(16), version=4)}-{user_id}"


class CookieCredentials:
    """The messaging client's credentials: cookies, an access token, and hooks.

    The ``unb`` cookie is required (it is the user id; the device id ends with
    it).  ``token_source`` gets a fresh access token from the cookies (called at
    first use, after an auth failure, and every ``token_refresh_interval``);
    ``cookie_source`` returns refreshed cookies; ``escalation`` (e.g. re-login)
    runs when the connection went FAILED.  Nothing here is ever shown: repr and
    errors name cookies, never their values.
    """

    def __init__(
        self,
        cookies: str | Secret | Mapping[str, Secret],
        *,
        token_source: TokenSource,
        cookie_source: CookieSource | None = None,
        escalation: Escalation | None = None,
    ) -> None:
        self._cookies = dict(cookies) if isinstance(cookies, Mapping) else parse_cookies(cookies)
        if "unb" not in self._cookies:
            names = ", ".join(sorted(self._cookies)) or "none"
            raise ConfigError("cookies", f"the 'unb' cookie is required (found: {names})")
        self._user_id = self._cookies["unb"]
        self._device_id = new_device_id(self._user_id.reveal())
        self._token_source = token_source
        self._cookie_source = cookie_source
        self._escalation = escalation
        self._token: Secret | None = None

    def __repr__(self) -> str:
        return f"<CookieCredentials cookies={sorted(self._cookies)}>"

    @property
    def user_id(self) -> Secret:
        """The ``unb`` cookie."""
        return self._user_id

    @property
    def device_id(self) -> str:
        """Sent at registration as ``did``; contains the user id, so never log it."""
        return self._device_id

    @property
    def cookie_names(self) -> list[str]:
        return sorted(self._cookies)

    async def handshake_headers(self) -> Mapping[str, Secret]:
        return {"Cookie": cookie_header(self._cookies)}

    async def access_token(self) -> Secret:
        if self._token is None:
            self._token = await self._token_source(self._cookies)
        return self._token

    async def refresh_token(self) -> bool:
        """Get a new access token; True if it differs from the old one."""
        old, self._token = self._token, await self._token_source(self._cookies)
        return old is None or old != self._token

    async def refresh_cookies(self) -> bool:
        """Refresh the cookies if a cookie source was given; True if they changed."""
        if self._cookie_source is None:
            return False
        fresh = dict(await self._cookie_source(self._cookies))
        if "unb" not in fresh:
            raise ConfigError(
                "cookies",
                f"refreshed cookies lack 'unb' (found: {', '.join(sorted(fresh)) or 'none'})",
            )
        changed = fresh != self._cookies
        self._cookies = fresh
        return changed

    async def refresh(self) -> bool:
        return await self.refresh_token()

    async def escalate(self) -> bool:
        if self._escalation is None:
            return False
        return await self._escalation()
