"""Fetch an access token with one HTTP GET (``fsm-live connect --protocol lwp``).

The token endpoint (``GET /token`` of ``fsm-live serve``) takes the account's
cookies in a ``Cookie`` header and answers ``{"token": "..."}``.  The request is
HTTP/1.1 over an anyio TCP stream (TLS for ``https://``), ``Connection: close``,
read up to :data:`MAX_RESPONSE` bytes.  No new dependency.

Every failure is a :class:`TokenFetchFailed` whose message names the endpoint
(scheme, host, port and path only) and what went wrong; it never contains a
cookie, the token, or the response body.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc

from fsm_live.credentials import Secret, cookie_header
from fsm_live.errors import ConfigError, CredentialsRejected, FsmLiveError
from fsm_live.transport.url import safe_url

__all__ = (
    "MAX_RESPONSE",
    "HttpTokenSource",
    "TokenFetchFailed",
    "TokenRejected",
    "fetch_token",
    "token_url_for",
)

#: The largest response read; a token answer is a few hundred bytes.
MAX_RESPONSE: Final = 64 * 1024


class TokenFetchFailed(FsmLiveError, RuntimeError):
    """The token endpoint could not be reached, or did not answer with a token."""


class TokenRejected(TokenFetchFailed, CredentialsRejected):
    """The token endpoint answered HTTP 401 or 403: it refused the cookies (they
    expired, the seed's "Cookie过期").  Fetching again with them cannot help."""


def token_url_for(ws_url: str) -> str:
    """``http://host:port/token`` for ``ws://host:port/...`` (``https`` for ``wss``).

    Raises :class:`ConfigError` for a URL that is not ``ws://`` or ``wss://``.
    """
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ConfigError("url", "expected a ws:// or wss:// URL to derive the token URL from")
    return urlunsplit((scheme, parts.netloc.rpartition("@")[2], "/token", "", ""))


def _endpoint(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL; ConfigError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("token_url", "expected an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError("token_url", "the URL's port is not a number") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


async def fetch_token(
    url: str, cookies: Mapping[str, Secret], *, ssl_context: ssl.SSLContext | None = None
) -> Secret:
    """GET ``url`` with ``cookies``; return the ``token`` of its JSON answer.

    Not bounded in time: wrap it in :func:`anyio.fail_after` (as
    :class:`HttpTokenSource` does).  Raises :class:`ConfigError` for a URL that is
    not http(s), :class:`TokenRejected` when the endpoint answers 401 or 403, and
    :class:`TokenFetchFailed` when it is unreachable, answers another status than
    200, or its body is not JSON with a non-empty string ``token``.
    """
    scheme, host, port, path = _endpoint(url)
    where = safe_url(url)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
        f"User-Agent: fsm_live\r\nConnection: close\r\n"
        f"Cookie: {cookie_header(cookies).reveal()}\r\n\r\n"
    ).encode()
    try:
        raw = await _exchange(host, port, request, scheme == "https", ssl_context)
    except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
        raise TokenFetchFailed(
            f"token endpoint {where}: cannot connect ({type(exc).__name__})"
        ) from exc
    return _token_from(raw, where)


async def _exchange(
    host: str, port: int, request: bytes, tls: bool, ssl_context: ssl.SSLContext | None
) -> bytes:
    stream: anyio.abc.ByteStream
    if tls:
        stream = await anyio.connect_tcp(
            host, port, tls=True, ssl_context=ssl_context, tls_standard_compatible=False
        )
    else:
        stream = await anyio.connect_tcp(host, port)
    async with stream:
        await stream.send(request)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_RESPONSE:
            try:
                chunk = await stream.receive()
            except anyio.EndOfStream:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)


def _token_from(raw: bytes, where: str) -> Secret:
    if len(raw) > MAX_RESPONSE:
        raise TokenFetchFailed(f"token endpoint {where}: answer larger than {MAX_RESPONSE} bytes")
    head, separator, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if (
        not separator
        or len(parts) < 2
        or not parts[0].startswith("HTTP/")
        or not parts[1].isdigit()
    ):
        raise TokenFetchFailed(f"token endpoint {where}: not an HTTP answer")
    status = int(parts[1])
    if status in (401, 403):
        raise TokenRejected(f"token endpoint {where}: answered HTTP {status}")
    if status != 200:
        raise TokenFetchFailed(f"token endpoint {where}: answered HTTP {status}")
    if b"transfer-encoding: chunked" in head.lower():
        raise TokenFetchFailed(f"token endpoint {where}: chunked answers are not supported")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise TokenFetchFailed(f"token endpoint {where}: the answer is not JSON") from None
    token = value.get("token") if isinstance(value, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenFetchFailed(f"token endpoint {where}: the answer has no 'token' string")
    return Secret(token)


class HttpTokenSource:
    """A :data:`~fsm_live.credentials.TokenSource` that GETs the token from ``url``."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        _endpoint(url)  # a bad URL fails here, not at the first fetch
        self.url = url
        self.timeout = timeout
        self.ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"<HttpTokenSource {safe_url(self.url)}>"

    async def __call__(self, cookies: Mapping[str, Secret]) -> Secret:
        """The token; raises as :func:`fetch_token` does, and :class:`TokenFetchFailed`
        when the exchange takes longer than ``timeout`` seconds."""
        try:
            with anyio.fail_after(self.timeout):
                return await fetch_token(self.url, cookies, ssl_context=self.ssl_context)
        except TimeoutError:
            raise TokenFetchFailed(
                f"token endpoint {safe_url(self.url)}: no answer within {self.timeout:g} s"
            ) from None
