"""The one place where transport failures become :class:`~fsm_live.errors.TransportError`.

Exceptions of websockets, :mod:`ssl`, :class:`OSError`, :class:`TimeoutError` and the
anyio/trio stream errors are translated by :func:`translate`, always used as
``raise translate(exc) from exc`` so the original stays reachable as ``__cause__``.
Translation reads exception *types*, HTTP statuses and close codes, never message
text, and the ``reason`` it writes is short and free of secrets: it never includes
``str(exc)`` of a handshake exception (that text may echo request headers such as
Cookie), header values, or the URL (which may carry credentials).

===============================================  =========================================
exception                                        facts on the TransportError
===============================================  =========================================
``InvalidStatus`` (HTTP answer other than 101)   :class:`HandshakeRejected`, ``http_status``,
                                                 ``retry_after`` from Retry-After
``InvalidURI``, ``InvalidProxy``                 kind ``bad_uri``
python-socks' ``ProxyError`` (refused, garbled)  kind ``unreachable``
``InvalidMessage`` and other ``InvalidHandshake`` kind of its cause (e.g. ``reset``), else ``eof``
``ConnectionClosed``                             ``close_code``: the received close frame's
                                                 code; else the code websockets failed the
                                                 link with (1009 message too big, 1002, 1007);
                                                 else 1006 (abnormal closure)
``TimeoutError``                                 kind ``timeout``
``OSError``, ``ssl.SSLError``, ``EOFError``      :func:`failure_kind` (a certificate or host
                                                 name failure -> ``tls``, any other TLS
                                                 failure -> ``tls_handshake``)
stream errors, exception groups                  the first kind found in ``__cause__`` or in
                                                 the group (trio wraps connect and TLS errors)
===============================================  =========================================

A failure while TLS is set up over an open TCP connection is translated by
:func:`tls_failed`: ``tls`` for a certificate or host name, else ``tls_handshake``
whatever the TLS layer made of it (an alert, an HTTP answer, the peer hanging up).

The in-memory transport raises through the same helpers (:func:`closed`,
:func:`failed`, :func:`rejected`), so both transports report identical facts.
"""

from __future__ import annotations

import email.utils
import errno
import math
import socket
import ssl
from datetime import UTC, datetime

import anyio
from python_socks import ProxyError as SocksProxyError
from websockets.exceptions import ConnectionClosed as WebSocketsClosed
from websockets.exceptions import (
    InvalidHandshake,
    InvalidProxy,
    InvalidStatus,
    InvalidURI,
    ProxyError,
)
from websockets.frames import EXTERNAL_CLOSE_CODES

from fsm_live.errors import ConfigError, HandshakeRejected, TransportError

__all__ = (
    "ABNORMAL_CLOSURE",
    "TRANSLATABLE",
    "check_close",
    "close_code_of",
    "closed",
    "failed",
    "failure_kind",
    "parse_retry_after",
    "rejected",
    "tls_failed",
    "translate",
)

#: The close code reported when the link ended without a close frame.
ABNORMAL_CLOSURE = 1006

_CLOSE_NAMES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code",
    1006: "abnormal closure",
    1007: "invalid data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}

_KIND_REASONS = {
    "refused": "connection refused",
    "reset": "connection reset",
    "dns": "DNS lookup failed",
    "timeout": "timed out opening the connection",
    "eof": "connection closed during the handshake",
    "unreachable": "network unreachable",
    "bad_uri": "invalid WebSocket URI",
    "tls": "TLS certificate or hostname verification failed",
    "tls_handshake": "TLS handshake failed (does the server speak TLS on this port?)",
    "registration_rejected": "registration rejected",
    "heartbeat_timeout": "heartbeat timed out",
}

# How deep to follow __cause__ links and exception groups for a failure kind.
_MAX_DEPTH = 4
# Close frames carry at most 125 bytes: a 2-byte code and the reason.
_MAX_CLOSE_REASON = 123


def _close_name(code: int) -> str:
    if code in _CLOSE_NAMES:
        return _CLOSE_NAMES[code]
    if 3000 <= code < 4000:
        return "registered code"
    if 4000 <= code < 5000:
        return "application code"
    return "unknown code"


def closed(code: int, detail: str | None = None) -> TransportError:
    """The error for a link that closed with ``code`` (1006: dropped without a close
    frame); ``detail`` says how, if known (say, "connection reset")."""
    how = f": {detail}" if detail else ""
    return TransportError(f"closed {code} ({_close_name(code)}{how})", close_code=code)


def failed(kind: str, reason: str | None = None) -> TransportError:
    """The error for an attempt that failed with a failure ``kind`` (see ``FAILURE_KINDS``)."""
    return TransportError(reason or _KIND_REASONS.get(kind, kind), kind=kind)


def rejected(status: int, retry_after: str | None = None) -> HandshakeRejected:
    """The error for an HTTP answer ``status`` to the handshake.

    ``retry_after`` is the raw Retry-After header value, if the server sent one.
    """
    return HandshakeRejected(
        f"HTTP {status} at handshake",
        http_status=status,
        retry_after=parse_retry_after(retry_after),
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header value, or None.

    Accepts delta-seconds (``"7"``) and an HTTP-date (a date in the past gives 0.0);
    returns None when the value is absent or unparsable.  An HTTP-date is the one
    place wall-clock time is read (``now`` defaults to the current UTC time).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC too (RFC 5322)
        when = when.replace(tzinfo=UTC)
    delay = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delay) if math.isfinite(delay) else None


def close_code_of(exc: WebSocketsClosed, *, closed_by_app: bool = False) -> int:
    """The close code a websockets ``ConnectionClosed`` stands for.

    The code of the close frame received, if any.  Else, when websockets itself
    failed the link (it sent a close frame such as 1009 "message too big" and then
    stopped reading, as RFC 6455 requires), the code it sent.  Else 1006.  A close
    the application started (``closed_by_app``) that the peer never answered is 1006.
    """
    if exc.rcvd is not None:
        return exc.rcvd.code
    if exc.sent is not None and not closed_by_app:
        return exc.sent.code
    return ABNORMAL_CLOSURE


def check_close(code: int, reason: str) -> None:
    """Raise ValueError unless ``code`` and ``reason`` may be sent in a close frame."""
    if not (code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000):
        raise ConfigError("code", f"close code {code} may not be sent in a close frame")
    if len(reason.encode()) > _MAX_CLOSE_REASON:
        raise ConfigError("reason", f"close reason is longer than {_MAX_CLOSE_REASON} bytes")


def failure_kind(exc: BaseException) -> str | None:
    """The failure kind of an exception, decided by its type (and errno), or None.

    Certificate and host name failures are ``tls`` (fatal: verification is never
    switched off silently); any other TLS failure (say, ``wss://`` to a port that
    speaks plain HTTP) is ``tls_handshake``; an EOF during a TLS handshake is ``eof``.
    """
    if isinstance(exc, ssl.SSLCertVerificationError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | EOFError | anyio.EndOfStream):
        return "eof"
    if isinstance(exc, ssl.SSLError):
        return "tls_handshake"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(
        exc,
        ConnectionResetError | ConnectionAbortedError | BrokenPipeError | anyio.BrokenResourceError,
    ):
        return "reset"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in {
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
        errno.EADDRNOTAVAIL,
    }:
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "refused"  # e.g. python-socks' ProxyConnectionError
    return None


def _kind(exc: BaseException, depth: int = 0) -> str | None:
    """The failure kind of ``exc``, else of its cause or the exceptions it groups.

    A broken stream is ``reset`` unless its cause says more (a TLS stream broken by
    a certificate failure is ``tls``).
    """
    if (
        isinstance(exc, anyio.BrokenResourceError)
        and exc.__cause__ is not None
        and depth < _MAX_DEPTH
    ):
        kind = _kind(exc.__cause__, depth + 1)
        if kind is not None:
            return kind
    kind = failure_kind(exc)
    if kind is not None or depth >= _MAX_DEPTH:
        return kind
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            kind = _kind(inner, depth + 1)
            if kind is not None:
                return kind
    if exc.__cause__ is not None:
        return _kind(exc.__cause__, depth + 1)
    return None


def translate(exc: BaseException, *, closed_by_app: bool = False) -> TransportError:
    """The :class:`TransportError` for a transport exception (see the module's table).

    Use as ``raise translate(exc) from exc``.  ``closed_by_app`` tells a link the
    application was closing, so an unanswered close reads as 1006.  An exception
    with no known kind keeps ``kind`` None, which the classifier's default covers.
    """
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, InvalidStatus):
        # A repeated Retry-After is ambiguous: ignore it rather than guess.
        values = exc.response.headers.get_all("Retry-After")
        return rejected(exc.response.status_code, values[0] if len(values) == 1 else None)
    if isinstance(exc, InvalidURI | InvalidProxy | UnicodeError):
        return failed("bad_uri")  # UnicodeError: a host name with no IDNA form
    if isinstance(exc, WebSocketsClosed):
        return closed(close_code_of(exc, closed_by_app=closed_by_app))
    if isinstance(exc, ProxyError | SocksProxyError):
        return failed("unreachable", "the proxy did not open the connection")
    if isinstance(exc, InvalidHandshake):
        kind = _kind(exc.__cause__) if exc.__cause__ is not None else None
        if kind is None:
            # Not a WebSocket answer: the server closed, or spoke something else.
            return failed("eof", f"invalid handshake answer ({type(exc).__name__})")
        return failed(kind)
    kind = _kind(exc)
    if kind is None:
        return TransportError(f"transport failure ({type(exc).__name__})")
    return failed(kind)


def tls_failed(exc: BaseException) -> TransportError:
    """The error for ``exc`` raised while setting up TLS over an open connection.

    A certificate or host name failure is ``tls`` (fatal); anything else is
    ``tls_handshake``: the TCP connection was up, so the peer hanging up or resetting
    it on the TLS hello (a port that does not speak TLS) is a handshake failure too.
    Use as ``raise tls_failed(exc) from exc``.
    """
    error = translate(exc)
    return error if error.kind == "tls" else failed("tls_handshake")


#: The exception types a transport catches and hands to :func:`translate`; anything
#: else is a bug and propagates as is.  (anyio's stream errors stand for trio's too:
#: anyio wraps them; python-socks' connection and timeout errors are OSErrors.)
TRANSLATABLE: tuple[type[BaseException], ...] = (
    TransportError,
    WebSocketsClosed,
    InvalidHandshake,
    InvalidURI,
    InvalidProxy,
    UnicodeError,  # a host name with no IDNA form (socket.getaddrinfo raises it)
    OSError,
    EOFError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    SocksProxyError,
)
