"""``etcd://HOST:PORT[/PREFIX]``, the ``--coordinator`` of ``fsm-live fleet``."""

from __future__ import annotations

from urllib.parse import urlsplit

import attrs

from fsm_live.cluster.keys import DEFAULT_PREFIX, KeyLayout
from fsm_live.errors import ConfigError

__all__ = ("CoordinatorUrl",)


@attrs.frozen
class CoordinatorUrl:
    """Where the cluster's etcd is (``endpoint``: ``HOST:PORT``) and its key ``prefix``."""

    endpoint: str
    prefix: str = DEFAULT_PREFIX

    @classmethod
    def parse(cls, text: str, *, field: str = "--coordinator") -> CoordinatorUrl:
        """Read ``etcd://HOST:PORT[/PREFIX]`` (the prefix defaults to ``/fsm_live``).

        Raises :class:`ConfigError` naming ``field`` for another scheme, a missing
        host or port, a port outside 1-65535, a query, a fragment or credentials.
        """
        parts = urlsplit(text)
        if parts.scheme != "etcd":
            raise ConfigError(field, f"expected etcd://HOST:PORT[/PREFIX], got {text!r}")
        if parts.username is not None or parts.query or parts.fragment:
            raise ConfigError(field, "etcd://HOST:PORT[/PREFIX] takes no user, query or fragment")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or not 0 < port < 65536:
            raise ConfigError(field, f"expected a host and a port from 1 to 65535 in {text!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        prefix = parts.path.rstrip("/") or DEFAULT_PREFIX
        try:
            KeyLayout(prefix)
        except ConfigError as exc:
            raise ConfigError(field, str(exc).removeprefix("prefix: ")) from None
        return cls(f"{host}:{port}", prefix)
