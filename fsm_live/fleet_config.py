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

Layers, lowest first: Config's defaults, ``[defaults]``, the account's own
fields.  ``FSM_LIVE_*`` environment variables do not apply: the file is the
fleet's whole configuration (``cookies_env`` names the one variable an account
reads).  A relative ``cookies_file`` is relative to the fleet file's directory;
it holds one ``name=value; name2=value2`` line, sent as the handshake's
``Cookie`` header.  Cookies are optional for ``ping`` and ``json`` accounts.

``lwp`` accounts need cookies and a ``token_url`` to fetch their access token
from; fetching it over HTTP is not part of fsm_live yet, so loading a file with
an ``lwp`` account raises :class:`~fsm_live.errors.ConfigError` (see
:data:`SUPPORTED_PROTOCOLS`).

Every problem raises :class:`~fsm_live.errors.ConfigError` whose field names the
file, the account and the key (``fleet.toml: accounts.alice.protocol``); a
cookie's value never appears in a message or a repr.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

import attrs

from fsm_live.config import Config
from fsm_live.credentials import (
    CredentialsProvider,
    Secret,
    StaticCredentials,
    cookie_header,
    parse_cookies,
)
from fsm_live.errors import ConfigError
from fsm_live.protocols import PROTOCOLS

__all__ = ("SUPPORTED_PROTOCOLS", "Account", "FleetConfig")

#: The protocols a fleet file may name today (``lwp`` needs a token source).
SUPPORTED_PROTOCOLS: Final = frozenset({"ping", "json"})
#: An account's own keys; any Config field may appear too.
_ACCOUNT_KEYS: Final = frozenset({"url", "protocol", "cookies_file", "cookies_env", "token_url"})
_TOP_LEVEL: Final = frozenset({"defaults", "accounts"})


@attrs.frozen
class Account:
    """One account of the fleet: where to connect, how, and with which cookies.

    ``cookies`` is the ``Cookie`` header value (a :class:`Secret`), or None.
    """

    key: str
    url: str
    protocol: str
    config: Config
    cookies: Secret | None = None

    def credentials(self) -> CredentialsProvider | None:
        """A new credentials provider for a connection of this account (None without
        cookies)."""
        if self.cookies is None:
            return None
        return StaticCredentials({"Cookie": self.cookies})

    def connection_options(self) -> dict[str, Any]:
        """Keyword options for :class:`~fsm_live.connection.LiveConnection` (and
        :meth:`Fleet.add <fsm_live.fleet.Fleet.add>`): protocol, config, credentials."""
        return {"protocol": self.protocol, "config": self.config,
                "credentials": self.credentials()}


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
        keys, a missing or bad ``url``, an unknown or unsupported ``protocol``, a
        bad Config value, cookies that cannot be read or parsed.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(str(path), "not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from None
        reader = _Reader(path, os.environ if env is None else env)
        return cls(path, reader.accounts(data))


@attrs.define
class _Reader:
    """Validation of one fleet file's data; every error is located in it."""

    path: Path
    env: Mapping[str, str]

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}", message)

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
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise self.error(f"{where}.url", "expected a ws:// or wss:// URL")
        protocol = self._string(table, "protocol", where) or "ping"
        if protocol not in PROTOCOLS:
            raise self.error(f"{where}.protocol", f"unknown protocol {protocol!r} "
                                                  f"(known: {', '.join(sorted(PROTOCOLS))})")
        cookies = self._cookies(table, where)
        token_url = self._string(table, "token_url", where)
        if protocol == "lwp":
            if token_url is None:
                raise self.error(where, "lwp accounts need token_url")
            raise self.error(f"{where}.token_url", "fetching lwp tokens over HTTP is not "
                                                   "supported yet; use ping or json")
        if token_url is not None:
            raise self.error(f"{where}.token_url", "only lwp accounts use a token_url")
        own = {name: value for name, value in table.items() if name in config_fields}
        config = self._config(where, defaults, own)
        return Account(key=key, url=url, protocol=protocol, config=config, cookies=cookies)

    def _config(self, where: str, defaults: dict[str, Any], own: dict[str, Any]) -> Config:
        """Config.load's defaults < ``defaults`` < ``own``; errors name ``where.KEY``."""
        fields = _config_fields()
        for name, value in own.items():
            if name not in fields or (name == "backoff" and not isinstance(value, dict)):
                self._unknown(f"{where}.{name}", fields - {"backoff"} | {"[backoff]"})
        try:
            return Config.load(env={}, overrides=_flatten(defaults) | _flatten(own))
        except ConfigError as error:
            message = str(error).removeprefix(f"{error.field}: ")
            key = error.field.partition(" ")[0]  # "backoff_maximum (maximum)": the key
            raise self.error(f"{where}.{_unflatten(key)}", message) from None

    def _cookies(self, table: Mapping[str, Any], where: str) -> Secret | None:
        file = self._string(table, "cookies_file", where)
        variable = self._string(table, "cookies_env", where)
        if file is not None and variable is not None:
            raise self.error(where, "give cookies_file or cookies_env, not both")
        if file is not None:
            cookie_path = self.path.parent / file
            try:
                text = cookie_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise self.error(f"{where}.cookies_file",
                                 f"cannot read {cookie_path}: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise self.error(f"{where}.cookies_file",
                                 f"{cookie_path} is not UTF-8 text") from None
            return self._parse_cookies(text, f"{where}.cookies_file")
        if variable is not None:
            value = self.env.get(variable)
            if value is None:
                raise self.error(f"{where}.cookies_env",
                                 f"environment variable {variable} is not set")
            return self._parse_cookies(value, f"{where}.cookies_env")
        return None

    def _parse_cookies(self, text: str, where: str) -> Secret:
        try:
            cookies = parse_cookies(Secret(text.strip()))
        except ConfigError as error:  # names the pair's position, never its text
            raise self.error(where, str(error).removeprefix("cookies: ")) from None
        if not cookies:
            raise self.error(where, "no cookies in it")
        return cookie_header(cookies)


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
