"""An account's cookies, read from where they are kept, and its lwp credentials.

``fsm-live connect --protocol lwp`` and fleet files
(:mod:`fsm_live.fleet_config`) both go through these functions, so an account
is read and logged in the same way wherever it is configured:

* a cookies text (a file, an environment variable) holds ``name=value`` pairs
  separated by ``;`` or by line breaks (one cookie per line works too);
* an lwp account's credentials are a
  :class:`~fsm_live.credentials.CookieCredentials` (its ``unb`` cookie is
  required) whose token source GETs the access token from ``token_url``, by
  default :func:`~fsm_live.token_http.token_url_for` of the WebSocket URL (the
  ``/token`` endpoint ``fsm-live serve`` answers).

Every problem is a :class:`~fsm_live.errors.ConfigError` with a generic
``field`` (``cookies``, ``token_url``, ``url``, or the one the caller names)
that callers relocate to their own flag or key.  Messages name files, cookie
names and positions, never a cookie's value or a token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fsm_live.credentials import CookieCredentials, Secret, parse_cookies
from fsm_live.errors import ConfigError
from fsm_live.token_http import HttpTokenSource, token_url_for

__all__ = ("lwp_credentials", "parse_cookie_text", "read_cookies_file")


def read_cookies_file(path: str | os.PathLike[str], *, field: str) -> Secret:
    """The whole text of the cookies file at ``path``, as a :class:`Secret`.

    Raises ``ConfigError(field, ...)`` naming ``path`` when the file cannot be
    read (with the system's reason) or is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8") as file:
            return Secret(file.read())
    except OSError as exc:
        raise ConfigError(field, f"cannot read {os.fspath(path)}: "
                                 f"{exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(field, f"{os.fspath(path)} is not UTF-8 text") from None


def parse_cookie_text(text: Secret) -> dict[str, Secret]:
    """The cookies of a cookies text: ``name=value`` pairs separated by ``;`` or line
    breaks, in order (an empty text gives none).

    Raises ``ConfigError("cookies", "pair N is not name=value")`` for a malformed
    pair, counting pairs across lines; the pair's text is never shown.
    """
    return parse_cookies(Secret("; ".join(text.reveal().splitlines())))


def lwp_credentials(cookies: Secret | Mapping[str, Secret], *, url: str,
                    token_url: str | None = None) -> CookieCredentials:
    """New credentials for one lwp connection to ``url``.

    ``cookies`` is a cookies text (see :func:`parse_cookie_text`) or cookies
    already parsed; ``token_url`` is where the access token is fetched from
    (:class:`~fsm_live.token_http.HttpTokenSource`), by default
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
