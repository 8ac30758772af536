"""The accounts of a fleet, from a TOML file: one table per account.

::

    [defaults]                       # optional: Config fields for every account
    heartbeat_interval = 15
    [defaults.backoff]               # optional, as in Config files
    policy = "exponential"

    [accounts.alice]
    url = "wss://example.org/feed"   # required, ws:// or wss://
    protocol = "json"                # ping (default) | json | lwp
    cookies_file = "alice.cookies"   # or cookies_env = "ALICE_COOKIES"
    heartbeat_timeout = 40           # any Config field, for this account only

    [accounts.bob]
    url = "wss://example.org/feed"

    [accounts.carol]
    url = "ws://127.0.0.1:8765/"
    protocol = "lwp"
    cookies_env = "CAROL_COOKIES"    # lwp: cookies with unb are required
    token_url = "http://127.0.0.1:8765/token"   # optional, this is the default

Layers, lowest first: Config's defaults, ``[defaults]``, the account's own
fields.  ``FSM_LIVE_*`` environment variables do not apply: the file is the
fleet's whole configuration (``cookies_env`` names the one variable an account
reads).  A relative ``cookies_file`` is relative to the fleet file's directory.
A cookies text (the file, or the variable's value) holds ``name=value`` pairs
separated by ``;`` or by line breaks; they are sent as the handshake's
``Cookie`` header.  Cookies are optional for ``ping`` and ``json`` accounts.

``lwp`` accounts need cookies with a ``unb`` cookie (the user id).  Their access
token is fetched with an HTTP GET of ``token_url`` (default: ``http://HOST:PORT/token``
of ``url``, ``https`` for ``wss``), as ``fsm-live connect --protocol lwp`` does:
both build their credentials with
:func:`~fsm_live.lwp.credentials.lwp_credentials`.  ``token_url`` is only
allowed on ``lwp`` accounts.

Every problem raises :class:`~fsm_live.errors.ConfigError` whose field names the
file, the account and the key (``fleet.toml: accounts.alice.protocol``); a
cookie's value never appears in a message or a repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

import attrs

from fsm_live.config import Config, read_toml
from fsm_live.connection import PROTOCOLS
from fsm_live.credentials import CredentialsProvider, Secret, StaticCredentials, cookie_header
from fsm_live.errors import ConfigError
from fsm_live.lwp.credentials import lwp_credentials, parse_cookie_text, read_cookies_file
from fsm_live.transport.url import safe_url

__all__ = ("Account", "FleetConfig")

#: An account's own keys; any Config field may appear too.
_ACCOUNT_KEYS: Final = frozenset({"url", "protocol", "cookies_file", "cookies_env", "token_url"})
_TOP_LEVEL: Final = frozenset({"defaults", "accounts"})


@attrs.frozen
class Account:
    """One account of the fleet: where to connect, how, and with which cookies.

    ``cookies`` is the ``Cookie`` header value (a :class:`Secret`), or None;
    ``token_url`` is where an ``lwp`` account fetches its access token (None:
    the default of :func:`~fsm_live.lwp.credentials.lwp_credentials`).  An
    ``lwp`` account needs cookies, and only an ``lwp`` account may have a
    ``token_url`` (ConfigError otherwise; :meth:`FleetConfig.load` checks more,
    such as the ``unb`` cookie, and says where).  The repr shows neither the
    cookies nor the token URL (which may carry a key in its query), and the URL
    only as :func:`~fsm_live.transport.url.safe_url` shows it (no user info, no
    query).
    """

    key: str
    url: str = attrs.field(repr=lambda url: repr(safe_url(url)))
    protocol: str
    config: Config
    cookies: Secret | None = None
    token_url: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.protocol == "lwp" and self.cookies is None:
            raise ConfigError("cookies", f"account {self.key!r}: lwp accounts need cookies")
        if self.protocol != "lwp" and self.token_url is not None:
            raise ConfigError(
                "token_url", f"account {self.key!r}: only lwp accounts use a token_url"
            )

    def credentials(self) -> CredentialsProvider | None:
        """A new credentials provider for one connection of this account.

        ``lwp``: a :class:`~fsm_live.lwp.credentials.CookieCredentials` fetching its
        token from ``token_url`` (see
        :func:`~fsm_live.lwp.credentials.lwp_credentials`, whose
        ConfigError it raises for cookies or a token URL that
        :meth:`FleetConfig.load` would have refused).  Other protocols: fixed
        ``Cookie`` headers, or None without cookies.
        """
        if self.protocol == "lwp":
            assert self.cookies is not None  # __attrs_post_init__
            return lwp_credentials(self.cookies, url=self.url, token_url=self.token_url)
        if self.cookies is None:
            return None
        return StaticCredentials({"Cookie": self.cookies})

    def connection_options(self) -> dict[str, Any]:
        """Keyword options for :class:`~fsm_live.connection.LiveConnection` (and
        :meth:`Fleet.add <fsm_live.fleet.Fleet.add>`): protocol, config, credentials."""
        return {"protocol": self.protocol, "config": self.config, "credentials": self.credentials()}


@attrs.frozen
class FleetConfig:
    """A fleet file, loaded and validated: its accounts in file order."""

    path: Path
    accounts: tuple[Account, ...]

    @classmethod
    def load(cls, path: str | Path, *, env: Mapping[str, str] | None = None) -> FleetConfig:
        """Read and validate the fleet file at ``path``.

        ``env`` (default ``os.environ``) is where ``cookies_env`` variables are
        looked up.  Raises :class:`ConfigError` naming the file, the account and
        the key for every kind of problem: unreadable or invalid TOML, unknown
        keys, a missing or bad ``url``, an unknown ``protocol``, a bad Config
        value, cookies that cannot be read or parsed, an ``lwp`` account without
        cookies or without a ``unb`` cookie, a ``token_url`` that is not http(s)
        or on an account that is not ``lwp``.
        """
        path = Path(path)
        data = read_toml(path)
        reader = _Reader(path, os.environ if env is None else env)
        return cls(path, reader.accounts(data))


@attrs.define
class _Reader:
    """Validation of one fleet file's data; every error is located in it."""

    path: Path
    env: Mapping[str, str]

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}", message)

    def moved(self, error: ConfigError, where: str) -> ConfigError:
        """``error``'s message, located at ``where`` in this file."""
        return self.error(where, str(error).removeprefix(f"{error.field}: "))

    def accounts(self, data: dict[str, Any]) -> tuple[Account, ...]:
        for key in data:
            if key not in _TOP_LEVEL:
                self._unknown(key, _TOP_LEVEL)
        defaults = self._table(data.get("defaults", {}), "defaults")
        self._config("defaults", {}, defaults)  # so that its errors name [defaults]
        accounts = self._table(data.get("accounts", {}), "accounts")
        if not accounts:
            raise self.error("accounts", "no accounts: add an [accounts.NAME] table")
        return tuple(self._account(key, defaults, accounts[key]) for key in accounts)

    def _unknown(self, where: str, known: frozenset[str]) -> NoReturn:
        raise self.error(where, f"unknown key (known: {', '.join(sorted(known))})")

    def _table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, "must be a table")
        return value

    def _string(self, table: Mapping[str, Any], key: str, where: str) -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.error(f"{where}.{key}", "must be a non-empty string")
        return value

    def _account(self, key: str, defaults: dict[str, Any], value: Any) -> Account:
        where = f"accounts.{key}"
        table = self._table(value, where)
        if not key.strip():
            raise self.error(where, "an account name must not be blank")
        config_fields = _config_fields()
        for name in table:
            if name not in _ACCOUNT_KEYS and name not in config_fields:
                self._unknown(f"{where}.{name}", _ACCOUNT_KEYS | {"a Config field"})
        url = self._string(table, "url", where)
        if url is None:
            raise self.error(f"{where}.url", "missing: every account needs a url")
        if (problem := _url_problem(url)) is not None:
            raise self.error(f"{where}.url", problem)
        protocol = self._string(table, "protocol", where) or "ping"
        if protocol not in PROTOCOLS:
            raise self.error(
                f"{where}.protocol",
                f"unknown protocol {protocol!r} (known: {', '.join(sorted(PROTOCOLS))})",
            )
        found = self._cookies(table, where)
        cookies = None if found is None else found[1]
        token_url = self._string(table, "token_url", where)
        if protocol == "lwp":
            self._check_lwp(where, url, found, token_url)
        elif token_url is not None:
            raise self.error(f"{where}.token_url", "only lwp accounts use a token_url")
        own = {name: value for name, value in table.items() if name in config_fields}
        config = self._config(where, defaults, own)
        return Account(
            key=key, url=url, protocol=protocol, config=config, cookies=cookies, token_url=token_url
        )

    def _check_lwp(
        self, where: str, url: str, cookies: tuple[str, Secret] | None, token_url: str | None
    ) -> None:
        """Build the account's credentials once, as every connection will: what
        fails here would fail each of them."""
        if cookies is None:
            raise self.error(
                where,
                "lwp accounts need cookies: add cookies_file or cookies_env (with a unb cookie)",
            )
        cookies_where, header = cookies
        try:
            lwp_credentials(header, url=url, token_url=token_url)
        except ConfigError as error:
            field = {"token_url": f"{where}.token_url", "url": f"{where}.url"}
            raise self.moved(error, field.get(error.field, cookies_where)) from None

    def _config(self, where: str, defaults: dict[str, Any], own: dict[str, Any]) -> Config:
        """Config.load's defaults < ``defaults`` < ``own``; errors name ``where.KEY``."""
        fields = _config_fields()
        for name, value in own.items():
            if name not in fields or (name == "backoff" and not isinstance(value, dict)):
                self._unknown(f"{where}.{name}", fields - {"backoff"} | {"[backoff]"})
        try:
            return Config.load(env={}, overrides=_flatten(defaults) | _flatten(own))
        except ConfigError as error:
            key = error.field.partition(" ")[0]  # "backoff_maximum (maximum)": the key
            raise self.moved(error, f"{where}.{_unflatten(key)}") from None

    def _cookies(self, table: Mapping[str, Any], where: str) -> tuple[str, Secret] | None:
        """(where they were found, ``Cookie`` header) of the account's cookies, or None."""
        file = self._string(table, "cookies_file", where)
        variable = self._string(table, "cookies_env", where)
        if file is not None and variable is not None:
            raise self.error(where, "give cookies_file or cookies_env, not both")
        if file is not None:
            found = f"{where}.cookies_file"
            try:
                text = read_cookies_file(self.path.parent / file, field=found)
            except ConfigError as error:
                raise self.moved(error, found) from None
        elif variable is not None:
            found = f"{where}.cookies_env"
            value = self.env.get(variable)
            if value is None:
                raise self.error(found, f"environment variable {variable} is not set")
            text = Secret(value)
        else:
            return None
        try:
            cookies = parse_cookie_text(text)
        except ConfigError as error:  # names the pair's position, never its text
            raise self.moved(error, found) from None
        if not cookies:
            raise self.error(found, "no cookies in it")
        return found, cookie_header(cookies)


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be dialled as a WebSocket URL, or None: it needs the scheme
    ws or wss, a host, and (if it has one) a port from 1 to 65535.  The message
    quotes no more of the URL than host and port (never credentials in it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        return "expected a ws:// or wss:// URL"
    if not parts.hostname:
        return "expected a host after ws:// or wss://"
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        host_and_port = parts.netloc.rpartition("@")[2]
        return f"expected a port from 1 to 65535, got {host_and_port!r}"
    return None


def _config_fields() -> frozenset[str]:
    return frozenset(field.name for field in attrs.fields(Config))


def _flatten(table: Mapping[str, Any]) -> dict[str, Any]:
    """Config.load's override keys: ``[backoff] policy``/``x`` become
    ``backoff_policy``/``backoff_x``."""
    flat: dict[str, Any] = {}
    for name, value in table.items():
        if name == "backoff" and isinstance(value, dict):
            flat.update({f"backoff_{param}": param_value for param, param_value in value.items()})
        else:
            flat[name] = value
    return flat


def _unflatten(key: str) -> str:
    return f"backoff.{key.removeprefix('backoff_')}" if key.startswith("backoff_") else key
