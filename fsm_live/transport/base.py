"""The transport seam: one attempt to open a byte link to a WebSocket server.

fsm_live speaks WebSocket itself (websockets' Sans-I/O layer, driven by the
engine); a transport only opens the bytes underneath: TCP, TLS for ``wss://``,
a proxy tunnel, or an in-memory pipe in tests.  It makes a single attempt (the
lifecycle owns retrying) and reports every failure as a
:class:`~fsm_live.errors.TransportError` carrying the facts the spec's error
table classifies by (translated in :mod:`fsm_live.transport.errors`, once).

Two shapes:

* :class:`Transport`: ``open_stream`` returns an anyio byte stream.  Any
  backend; the engine reads and writes it with two jobs.
* :class:`AsyncioTransport` adds ``open_asyncio``, which hands the connection
  to an ``asyncio.Protocol`` (``loop.create_connection``): no task per link.
  The default transport has both and fsm_live uses the second on asyncio.

Implementations: :class:`fsm_live.transport.tcp.TcpTransport` (the default)
and :class:`fsm_live.transport.memory.MemoryTransport` (tests).
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import anyio.abc
import attrs

__all__ = ("AsyncioTransport", "Message", "Target", "Transport")

#: An application-level WebSocket message: text (``str``) or binary (``bytes``).
Message = str | bytes


@attrs.frozen(kw_only=True)
class Target:
    """Where one attempt goes.

    ``url`` is the WebSocket URL (checked, see :func:`fsm_live.transport.url.check_url`);
    ``host``/``port`` what to connect to and ``secure`` whether it is ``wss://``.
    ``ssl`` None means a default context for ``wss://``: certificate and
    hostname verification on, never switched off silently.  ``proxy`` is a proxy
    URL (``http://``, ``socks5h://``, ...) or None for a direct connection.
    """

    url: str
    host: str
    port: int
    secure: bool
    ssl: _ssl.SSLContext | None = None
    proxy: str | None = None

    def ssl_context(self) -> _ssl.SSLContext | None:
        """The context for TLS (None for ``ws://``)."""
        if not self.secure:
            return None
        return self.ssl if self.ssl is not None else _ssl.create_default_context()


@runtime_checkable
class Transport(Protocol):
    """Opens byte links as anyio streams."""

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        """One attempt; the stream is open (TLS done) when it returns.

        Raises :class:`~fsm_live.errors.TransportError`.  Cancellation stops the
        attempt and leaves nothing open.
        """
        ...


@runtime_checkable
class AsyncioTransport(Transport, Protocol):
    """A transport that can also hand a connection to an ``asyncio.Protocol``."""

    async def open_asyncio(self, target: Target, protocol: Callable[[], asyncio.Protocol]) -> None:
        """One attempt with ``loop.create_connection``: returns once the protocol's
        ``connection_made`` was called.  Raises as :meth:`open_stream` does."""
        ...
