"""Protocol adapters: how an application protocol rides on a WebSocket link.

``ping`` (WebSocket ping frames as heartbeats, messages passed through),
``json`` (JSON text frames) and ``lwp`` (the messaging client's protocol) ship
here; :func:`get_protocol` finds one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fsm_live.errors import ConfigError
from fsm_live.protocols.base import Decoded, ProtocolAdapter, SimpleDecoder
from fsm_live.protocols.json import JsonProtocol
from fsm_live.protocols.lwp import LwpProtocol
from fsm_live.protocols.ping import PingProtocol

__all__ = ("PROTOCOLS", "Decoded", "JsonProtocol", "LwpProtocol", "PingProtocol",
           "ProtocolAdapter", "SimpleDecoder", "get_protocol")

#: Adapters by the names the CLI and configuration files use.
PROTOCOLS: Final[dict[str, Callable[[], ProtocolAdapter]]] = {
    "ping": PingProtocol,
    "json": JsonProtocol,
    "lwp": LwpProtocol,
}


def get_protocol(name: str) -> ProtocolAdapter:
    """A new adapter by name; raises :class:`ConfigError` naming the known ones."""
    try:
        return PROTOCOLS[name]()
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise ConfigError("protocol", f"unknown protocol {name!r} (known: {known})") from None
