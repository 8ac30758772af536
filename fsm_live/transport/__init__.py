"""The bytes under the WebSocket: the transport seam and its implementations.

* :mod:`~fsm_live.transport.base`: the seam (:class:`Transport`,
  :class:`AsyncioTransport`) and what it is asked to dial (:class:`Target`);
* :mod:`~fsm_live.transport.tcp`: :class:`TcpTransport`, the default (TCP, TLS
  for ``wss://``, HTTP and SOCKS proxies);
* :mod:`~fsm_live.transport.memory`: an in-memory network for tests
  (``MemoryNetwork``, ``MemoryTransport``), under virtual time too;
* :mod:`~fsm_live.transport.errors`: third-party exceptions translated, once, into
  :class:`~fsm_live.errors.TransportError` with the facts the spec classifies by;
* :mod:`~fsm_live.transport.url`, :mod:`~fsm_live.transport.redaction`: URLs
  checked and shown without secrets; websockets' log lines redacted.
"""

from __future__ import annotations

from fsm_live.transport.base import AsyncioTransport, Message, Target, Transport
from fsm_live.transport.tcp import TcpTransport

__all__ = ("AsyncioTransport", "Message", "Target", "TcpTransport", "Transport")
