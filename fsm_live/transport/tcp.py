"""The default transport: TCP, TLS for ``wss://``, through a proxy where one is set.

:class:`TcpTransport` opens the bytes under a WebSocket link, one attempt at a
time.  On asyncio it hands the connection to an ``asyncio.Protocol`` with
``loop.create_connection`` (the loop's TLS); on any backend it can open an anyio
byte stream instead (``anyio.connect_tcp``, anyio's TLS).  TLS verifies the
certificate and host name with a default context unless the target carries its
own ``ssl`` context; it is never switched off silently.

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
        raise ConfigError("proxy", f"{_shown(proxy)}: {scheme}:// proxies are not supported "
                                   f"(use http://, socks5://, socks5h://, socks4://)")
    return proxy


def target_for(url: str, *, ssl: ssl_.SSLContext | None = None,
               proxy: str | bool | None = True) -> Target:
    """The :class:`Target` of ``url`` (already checked), with its proxy resolved."""
    wsuri = parse_uri(url)
    return Target(url=url, host=wsuri.host, port=wsuri.port, secure=wsuri.secure, ssl=ssl,
                  proxy=proxy_for(url, proxy))


#: The environment variables urllib reads proxies from (either case), and no_proxy.
_PROXY_VARIABLES: Final = tuple(
    name for scheme in ("ws", "wss", "socks", "https", "http", "all", "no")
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"))


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
    for scheme in (("wss", "socks", "https") if wsuri.secure
                   else ("ws", "socks", "https", "http")):
        found = proxies.get(scheme)
        if found is not None:
            if scheme == "socks" and found.startswith("http://"):
                found = "socks5h://" + found[7:]
            return found
    return None


#: urllib's no_proxy check against given proxies (not in typeshed; stable since 3.x).
_proxy_bypass: Callable[[str, dict[str, str]], bool] = (
    urllib.request.proxy_bypass_environment)  # type: ignore[attr-defined]


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
        try:
            context = target.ssl_context()
            stream: anyio.abc.ByteStream
            if target.proxy is None and context is not None:
                return await anyio.connect_tcp(
                    target.host, target.port, ssl_context=context, tls_hostname=target.host,
                    tls_standard_compatible=False)
            if target.proxy is None:
                return await anyio.connect_tcp(target.host, target.port)
            stream = await self._tunnel_stream(target)
            if context is not None:
                stream = await TLSStream.wrap(stream, hostname=target.host,
                                              ssl_context=context, standard_compatible=False)
        except errors.TRANSLATABLE as exc:
            raise errors.translate(exc) from exc
        return stream

    async def open_asyncio(self, target: Target,
                           protocol: Callable[[], asyncio.Protocol]) -> None:
        """``loop.create_connection`` to the target (see
        :class:`~fsm_live.transport.base.AsyncioTransport`)."""
        loop = asyncio.get_running_loop()
        context = target.ssl_context()
        try:
            if target.proxy is None:
                await loop.create_connection(protocol, target.host, target.port, ssl=context)
            else:
                sock = await self._tunnel_socket(target)
                await loop.create_connection(
                    protocol, sock=sock, ssl=context,
                    server_hostname=target.host if context is not None else None)
        except errors.TRANSLATABLE as exc:
            raise errors.translate(exc) from exc

    @staticmethod
    def _proxy_args(target: Target) -> dict[str, Any]:
        assert target.proxy is not None
        proxy = parse_proxy(target.proxy)
        proxy_type, rdns = _PROXY_TYPES[proxy.scheme]
        return {"proxy_type": proxy_type, "host": proxy.host, "port": proxy.port,
                "username": proxy.username, "password": proxy.password, "rdns": rdns}

    async def _tunnel_socket(self, target: Target) -> Any:
        from python_socks.async_.asyncio import Proxy

        proxy = Proxy(**self._proxy_args(target))
        return await proxy.connect(target.host, target.port)

    async def _tunnel_stream(self, target: Target) -> anyio.abc.SocketStream:
        from python_socks.async_.anyio import Proxy

        proxy = Proxy(**self._proxy_args(target))
        return await proxy.connect(target.host, target.port)
