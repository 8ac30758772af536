"""Where the demo's story runs: an lwp server, the network in front of it, and the way in.

The story (:mod:`fsm_live.demo`) is written against :class:`DemoEnvironment`;
two implementations carry it out:

* :class:`SocketEnvironment` (``fsm-live demo``): an
  :class:`~fsm_live.lwp.server.LwpServer` and a
  :class:`~fsm_live.fault_proxy.FaultProxy` in front of it, on 127.0.0.1,
  with real sockets and real time (anyio's asyncio backend).  Network faults are
  the proxy's; the token endpoint is the server's ``GET /token`` through the proxy.
* :class:`MemoryEnvironment` (tests): a
  :class:`~fsm_live.transport.memory.MemoryNetwork` and a
  :class:`~fsm_live.lwp.memory.MemoryLwpServer`, on any anyio backend,
  so the story runs in virtual time (trio's ``MockClock``).  Network faults are
  the URL's overrides and :class:`~fsm_live.transport.memory.ServerLink` methods;
  the token endpoint is a token source that fails as an unreachable one would.

Both push :data:`ITEMS_PER_PUSH` items every :data:`PUSH_INTERVAL` seconds, and
re-send an item of the previous push every :data:`DUPLICATE_EVERY`-th push.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final, Protocol, Self

import anyio
import anyio.lowlevel

from fsm_live.credentials import Secret
from fsm_live.errors import UsageError
from fsm_live.fault_proxy import FaultProxy, Faults
from fsm_live.lwp.faults import Fault
from fsm_live.lwp.memory import MemoryLwpServer
from fsm_live.lwp.server import LwpServer
from fsm_live.lwp.service import FaultEvent, LwpServerStats
from fsm_live.lwp.token import HttpTokenSource, TokenFetchFailed
from fsm_live.transport.base import Transport
from fsm_live.transport.memory import MemoryNetwork

__all__ = (
    "DUPLICATE_EVERY",
    "ITEMS_PER_PUSH",
    "PUSH_INTERVAL",
    "TOKEN_TIMEOUT",
    "DemoEnvironment",
    "MemoryEnvironment",
    "SocketEnvironment",
)

PUSH_INTERVAL: Final = 0.5
ITEMS_PER_PUSH: Final = 3
DUPLICATE_EVERY: Final = 2
#: How long a token fetch waits for an answer (then it fails, as over a black hole).
TOKEN_TIMEOUT: Final = 2.0
#: The cause under which the memory environment's network faults override the URL.
_NETWORK: Final = "network"


class DemoEnvironment(Protocol):
    """An lwp server and the network between it and the demo's client.

    Entered with ``async with`` (everything starts; :attr:`url` and
    :attr:`transport` are valid from then on), left to stop it all.  Network
    faults affect open links and new attempts alike, and the token endpoint too.
    """

    #: How fault lines name the network ("proxy", "network").
    network_name: str

    @property
    def url(self) -> str:
        """The WebSocket URL the client dials."""
        ...

    @property
    def transport(self) -> Transport | None:
        """The client's transport (None: the default websockets one)."""
        ...

    async def fetch_token(self, cookies: Mapping[str, Secret]) -> Secret:
        """A fresh access token from the server's token endpoint, across the network.

        Raises :class:`~fsm_live.lwp.token.TokenFetchFailed` when the endpoint
        cannot be reached: at once while the network is down, after
        :data:`TOKEN_TIMEOUT` while it is a black hole.
        """
        ...

    async def set_black_hole(self, on: bool) -> None:
        """Swallow every byte both ways, on open links and new ones (``on``), or stop."""
        ...

    async def set_down(self, down: bool) -> None:
        """Take the network down (open links dropped, new attempts fail) or bring it back."""
        ...

    async def inject(self, fault: Fault) -> None:
        """Fire a server fault now (``drop``, ``close``, ``reject``, ``restart``, ...)."""
        ...

    def on_fault(self, callback: Callable[[FaultEvent], None]) -> None:
        """Call ``callback`` when a server fault fires and when a timed one ends."""
        ...

    def server_stats(self) -> LwpServerStats:
        """What the server has seen so far."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SocketEnvironment:
    """The :class:`DemoEnvironment` of ``fsm-live demo``: real sockets on 127.0.0.1,
    an :class:`LwpServer` behind a :class:`FaultProxy` (asyncio backend only).

    ``seed`` seeds the proxy's jitter.
    """

    network_name = "proxy"

    def __init__(self, *, seed: int | None = None) -> None:
        self._seed = seed
        self._server: LwpServer | None = None
        self._proxy: FaultProxy | None = None
        self._tokens: HttpTokenSource | None = None

    async def __aenter__(self) -> Self:
        server = LwpServer(
            push_interval=PUSH_INTERVAL,
            items_per_push=ITEMS_PER_PUSH,
            duplicate_every=DUPLICATE_EVERY,
        )
        await server.__aenter__()
        try:
            proxy = FaultProxy(upstream=("127.0.0.1", server.port), seed=self._seed)
            await proxy.__aenter__()
        except BaseException as exc:
            await server.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._server, self._proxy = server, proxy
        host, port = proxy.address
        self._tokens = HttpTokenSource(f"http://{host}:{port}/token", timeout=TOKEN_TIMEOUT)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, proxy = self._running()
        try:
            await proxy.__aexit__(None, None, None)
        finally:
            await server.__aexit__(None, None, None)

    def _running(self) -> tuple[LwpServer, FaultProxy]:
        if self._server is None or self._proxy is None:
            raise UsageError("the environment is not running (use async with)")
        return self._server, self._proxy

    @property
    def url(self) -> str:
        host, port = self._running()[1].address
        return f"ws://{host}:{port}/"

    @property
    def transport(self) -> Transport | None:
        return None

    async def fetch_token(self, cookies: Mapping[str, Secret]) -> Secret:
        assert self._tokens is not None, "fetch_token before entering"
        return await self._tokens(cookies)

    async def set_black_hole(self, on: bool) -> None:
        proxy = self._running()[1]
        if on:
            proxy.set_faults(Faults(black_hole=True))
        else:
            proxy.clear_faults()

    async def set_down(self, down: bool) -> None:
        await self._running()[1].set_down(down)

    async def inject(self, fault: Fault) -> None:
        await self._running()[0].inject(fault)

    def on_fault(self, callback: Callable[[FaultEvent], None]) -> None:
        self._running()[0].on_fault(callback)

    def server_stats(self) -> LwpServerStats:
        return self._running()[0].stats()


class MemoryEnvironment:
    """The :class:`DemoEnvironment` of the virtual-time tests: a :class:`MemoryLwpServer`
    at ``url`` of its own :class:`MemoryNetwork` (any anyio backend)."""

    network_name = "network"

    def __init__(self, url: str = "ws://lwp.demo.test/") -> None:
        self.network = MemoryNetwork()
        self.server = MemoryLwpServer(
            self.network,
            url,
            push_interval=PUSH_INTERVAL,
            items_per_push=ITEMS_PER_PUSH,
            duplicate_every=DUPLICATE_EVERY,
        )

    async def __aenter__(self) -> Self:
        await self.server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.server.__aexit__(None, None, None)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def transport(self) -> Transport:
        return self.server.transport

    async def fetch_token(self, cookies: Mapping[str, Secret]) -> Secret:
        await anyio.lowlevel.checkpoint()
        blocked = self.server.route.blocked_by
        endpoint = f"token endpoint of {self.url}"
        if blocked == "black_hole":
            await anyio.sleep(TOKEN_TIMEOUT)
            raise TokenFetchFailed(f"{endpoint}: no answer within {TOKEN_TIMEOUT:g} s")
        if blocked == "refuse":
            raise TokenFetchFailed(f"{endpoint}: cannot connect (refused)")
        return await self.server.token_source(cookies)

    async def set_black_hole(self, on: bool) -> None:
        await anyio.lowlevel.checkpoint()
        if on:
            self.server.route.black_hole(_NETWORK)
            for link in self.server.links:
                link.black_hole()
        else:
            self.server.route.clear(_NETWORK)

    async def set_down(self, down: bool) -> None:
        await anyio.lowlevel.checkpoint()
        if down:
            self.server.route.refuse(_NETWORK)
            for link in self.server.links:
                link.drop()
        else:
            self.server.route.clear(_NETWORK)

    async def inject(self, fault: Fault) -> None:
        await self.server.inject(fault)

    def on_fault(self, callback: Callable[[FaultEvent], None]) -> None:
        self.server.on_fault(callback)

    def server_stats(self) -> LwpServerStats:
        return self.server.stats()
