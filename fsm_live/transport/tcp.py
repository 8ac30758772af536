"""The default transport: TCP, TLS for ``wss://``, through a proxy where one is set.

:class:`TcpTransport` opens the bytes under a WebSocket link, one attempt at a
time.  On asyncio it hands the connection to an ``asyncio.Protocol`` with
``loop.create_connection`` (the loop's TLS); on any backend it can open an anyio
byte stream instead (``anyio.connect_tcp``, anyio's TLS).  TLS verifies the
certificate and host name with a default context unless the target carries its
own ``ssl`` context; it is never switched off silently.

An attempt has two steps, and a failure is reported for the step it happened in:
the TCP connection (direct, or a proxy's tunnel), then TLS over it for ``wss://``.
A failure of the second step is ``tls`` (certificate, host name) or else
``tls_handshake`` (:func:`fsm_live.transport.errors.tls_failed`), whatever the TLS
layer made of it: a port that does not speak TLS may answer in plain HTTP, hang up
(asyncio's TLS reads that as a reset, anyio's as an end of stream) or reset.

Proxies follow websockets' rules (:func:`proxy_for`): the target's own proxy, or
the one the environment names for the URL (``wss_proxy``/``ws_proxy``,
``socks_proxy``, ``https_proxy``, ``http_proxy``, with ``no_proxy`` honoured).
The tunnel is python-socks' (HTTP CONNECT, SOCKS5, SOCKS4); TLS to the WebSocket
server runs inside it.

Every failure is a :class:`~fsm_live.errors.TransportError`, translated by
:func:`fsm_live.transport.errors.translate` from the exception's type.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl as ssl_
import urllib.request
from collections.abc import Callable
from typing import Any, Final

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from python_socks import ProxyType
from websockets.exceptions import InvalidProxy
from websockets.proxy import parse_proxy
from websockets.uri import WebSocketURI, parse_uri

from fsm_live.errors import ConfigError
from fsm_live.transport import errors
from fsm_live.transport.base import Target

__all__ = ("TcpTransport", "environment_proxy", "proxy_for", "target_for")

_PROXY_TYPES = {
    "http": (ProxyType.HTTP, False),
    "socks5": (ProxyType.SOCKS5, False),
    "socks5h": (ProxyType.SOCKS5, True),  # the proxy resolves the host name
    "socks4": (ProxyType.SOCKS4, False),
    "socks4a": (ProxyType.SOCKS4, True),
}


def proxy_for(url: str, proxy: str | bool | None) -> str | None:
    """The proxy URL an attempt to ``url`` goes through, or None.

    ``proxy`` True: the environment's (as websockets decides it, see
    :func:`environment_proxy`); None or False: none; a string: that one.  Raises
    :class:`~fsm_live.errors.ConfigError` for a proxy URL that cannot be used
    (naming it without its credentials).
    """
    if proxy is True:
        proxy = environment_proxy(parse_uri(url))
    if not proxy:
        return None
    try:
        scheme = parse_proxy(proxy).scheme
    except InvalidProxy as exc:
        raise ConfigError("proxy", f"{_shown(proxy)}: {exc.msg}") from None
    if scheme not in _PROXY_TYPES:
        raise ConfigError(
            "proxy",
            f"{_shown(proxy)}: {scheme}:// proxies are not supported "
            f"(use http://, socks5://, socks5h://, socks4://)",
        )
    return proxy


def target_for(
    url: str, *, ssl: ssl_.SSLContext | None = None, proxy: str | bool | None = True
) -> Target:
    """The :class:`Target` of ``url`` (already checked), with its proxy resolved."""
    wsuri = parse_uri(url)
    return Target(
        url=url,
        host=wsuri.host,
        port=wsuri.port,
        secure=wsuri.secure,
        ssl=ssl,
        proxy=proxy_for(url, proxy),
    )


#: The environment variables urllib reads proxies from (either case), and no_proxy.
_PROXY_VARIABLES: Final = tuple(
    name
    for scheme in ("ws", "wss", "socks", "https", "http", "all", "no")
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
)


def environment_proxy(wsuri: WebSocketURI) -> str | None:
    """The proxy the environment names for ``wsuri``, as websockets'
    ``websockets.proxy.get_proxy`` decides it (RFC 6455 section 4.1: SOCKS first,
    else the HTTPS proxy, for ``ws://`` the HTTP proxy too; ``no_proxy`` honoured).

    urllib reads the whole environment every time, about 0.4 ms: a fleet of ten
    thousand would spend seconds on it.  The proxies are read again only when
    one of the proxy variables changed.
    """
    proxies = _proxies(tuple(os.environ.get(name) for name in _PROXY_VARIABLES))
    if _proxy_bypass(f"{wsuri.host}:{wsuri.port}", proxies):
        return None
    for scheme in ("wss", "socks", "https") if wsuri.secure else ("ws", "socks", "https", "http"):
        found = proxies.get(scheme)
        if found is not None:
            if scheme == "socks" and found.startswith("http://"):
                found = "socks5h://" + found[7:]
            return found
    return None


#: urllib's no_proxy check against given proxies (not in typeshed; stable since 3.x).
_proxy_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=4)
def _proxies(fingerprint: tuple[str | None, ...]) -> dict[str, str]:
    return urllib.request.getproxies_environment()


def _shown(proxy: str) -> str:
    from fsm_live.transport.url import display_url

    return repr(display_url(proxy))


class TcpTransport:
    """Opens TCP (and TLS, and proxy) connections; stateless and shareable."""

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        """An anyio stream to the target, TLS done (see
        :class:`~fsm_live.transport.base.Transport`)."""
        context = target.ssl_context()
        stream: anyio.abc.ByteStream
        try:
            if target.proxy is None:
                stream = await anyio.connect_tcp(target.host, target.port)
            else:
                stream = await self._tunnel_stream(target)
        except errors.TRANSLATABLE as exc:
            raise errors.translate(exc) from exc
        if context is None:
            return stream
        try:
            return await TLSStream.wrap(
                stream, hostname=target.host, ssl_context=context, standard_compatible=False
            )
        except BaseException as exc:
            await anyio.aclose_forcefully(stream)  # the TCP connection or the tunnel
            if isinstance(exc, errors.TRANSLATABLE):
                raise errors.tls_failed(exc) from exc
            raise

    async def open_asyncio(self, target: Target, protocol: Callable[[], asyncio.Protocol]) -> None:
        """``loop.create_connection`` to the target (see
        :class:`~fsm_live.transport.base.AsyncioTransport`)."""
        loop = asyncio.get_running_loop()
        context = target.ssl_context()
        try:
            if target.proxy is None and context is None:
                await loop.create_connection(protocol, target.host, target.port)
                return
            sock = await (
                self._tcp_socket(target) if target.proxy is None else self._tunnel_socket(target)
            )
        except errors.TRANSLATABLE as exc:
            raise errors.translate(exc) from exc
        try:
            # Given a socket, asyncio owns it from here: it closes it on failure.
            await loop.create_connection(
                protocol,
                sock=sock,
                ssl=context,
                server_hostname=target.host if context is not None else None,
            )
        except errors.TRANSLATABLE as exc:
            raise (
                errors.tls_failed(exc) if context is not None else errors.translate(exc)
            ) from exc

    @staticmethod
    async def _tcp_socket(target: Target) -> socket.socket:
        """A TCP connection to the target, as a connected non-blocking socket: each
        address in turn (as ``loop.create_connection`` does), the first error if all
        fail with one alike, else an OSError caused by the group of them."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        failures: list[OSError] = []
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                failures.append(exc)
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        if len({str(exc) for exc in failures}) == 1:
            raise failures[0]
        raise OSError(f"all {len(failures)} connection attempts failed") from ExceptionGroup(
            "connection attempts", failures
        )

    @staticmethod
    def _proxy_args(target: Target) -> dict[str, Any]:
        assert target.proxy is not None
        proxy = parse_proxy(target.proxy)
        proxy_type, rdns = _PROXY_TYPES[proxy.scheme]
        return {
            "proxy_type": proxy_type,
            "host": proxy.host,
            "port": proxy.port,
            "username": proxy.username,
            "password": proxy.password,
            "rdns": rdns,
        }

    async def _tunnel_socket(self, target: Target) -> Any:
        from python_socks.async_.asyncio import Proxy

        proxy = Proxy(**self._proxy_args(target))
        return await proxy.connect(target.host, target.port)

    async def _tunnel_stream(self, target: Target) -> anyio.abc.SocketStream:
        from python_socks.async_.anyio import Proxy

        proxy = Proxy(**self._proxy_args(target))
        return await proxy.connect(target.host, target.port)
