"""Protocol adapters: how an application protocol rides on a WebSocket link.

The seam (:class:`ProtocolAdapter`, :class:`Registration`) and the generic
adapters: ``ping`` (WebSocket ping frames as heartbeats, messages passed
through) and ``json`` (JSON text frames).  The messaging client's ``lwp``
adapter lives with the rest of its profile in :mod:`fsm_live.lwp`;
:func:`fsm_live.connection.get_protocol` finds any of them by name.
"""

from __future__ import annotations

from fsm_live.protocols.base import Decoded, ProtocolAdapter, Registration, SimpleDecoder
from fsm_live.protocols.json import InvalidJson, JsonProtocol
from fsm_live.protocols.ping import PingProtocol

__all__ = (
    "Decoded",
    "InvalidJson",
    "JsonProtocol",
    "PingProtocol",
    "ProtocolAdapter",
    "Registration",
    "SimpleDecoder",
)
