"""The transport seam: one attempt to open a WebSocket link, and the open link.

A :class:`Transport` makes a single connection attempt (it never retries: the
lifecycle machine owns retrying).  Every failure, at the attempt or on the open
link, is raised as :class:`~fsm_live.errors.TransportError` carrying the facts
the spec's error table classifies by; third-party exceptions never escape.

Implementations: ``fsm_live.transport.websocket`` (websockets' client, asyncio
and trio backends) and ``fsm_live.transport.memory`` (in-memory, for tests).
All pass the conformance suite in ``tests/transport_conformance.py``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

__all__ = ("ConnectOptions", "Link", "Message", "Transport")

Message = str | bytes


@attrs.frozen(kw_only=True)
class ConnectOptions:
    """How to make one attempt.

    ``headers`` are sent with the handshake (e.g. Cookie); they may hold secrets
    and are never logged.  ``ssl`` None means the default context for ``wss://``:
    certificate and hostname verification on.  ``compression`` enables
    permessage-deflate (about 3x the memory per idle connection).
    """

    open_timeout: float = 10.0
    close_timeout: float = 5.0
    headers: Mapping[str, str] = attrs.field(factory=dict)
    max_size: int | None = 1 << 20
    max_queue: int = 16
    compression: bool = False
    ssl: ssl.SSLContext | None = None
    user_agent: str | None = "fsm_live"


class Link(Protocol):
    """An open WebSocket link.  Methods may be called from different tasks.

    After the link breaks or closes, ``send``, ``receive`` and ``ping`` raise
    :class:`~fsm_live.errors.TransportError` with the close code (1006 when the
    TCP connection dropped without a close frame).
    """

    async def send(self, message: Message) -> None:
        """Send one message (``str`` as a text frame, ``bytes`` as binary)."""
        ...

    async def receive(self) -> Message:
        """Wait for and return the next whole message; never a fragment."""
        ...

    async def ping(self) -> None:
        """Send a ping frame and return once its pong (or a later one) arrives."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close within the attempt's ``close_timeout``, then abort.

        Raises no :class:`~fsm_live.errors.TransportError` (a broken link is simply
        closed); raises ValueError for a code or reason that cannot be sent
        (1005, 1006, outside 1000-4999, a reason over 123 bytes).
        """
        ...

    @property
    def close_code(self) -> int | None:
        """The close code once the link is closed (1006 for an abnormal drop), else None."""
        ...


class Transport(Protocol):
    """Makes single connection attempts."""

    def connect(self, url: str, options: ConnectOptions) -> AbstractAsyncContextManager[Link]:
        """An async context manager: entering dials and completes the WebSocket handshake
        within ``options.open_timeout``, yielding the open :class:`Link`; leaving closes it
        (bounded by ``options.close_timeout``).

        Entering raises :class:`~fsm_live.errors.TransportError` (an HTTP error answer
        as :class:`~fsm_live.errors.HandshakeRejected`, with ``retry_after`` from the
        Retry-After header when present).  Must be entered and left in the same task.
        """
        ...
