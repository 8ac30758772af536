"""The exceptions fsm_live raises, as a tree: whose doing was it?

Every exception fsm_live raises on purpose derives from :class:`FsmLiveError`;
where a builtin fits, it is a base too, so ``except ValueError`` keeps working for
bad input.  The tree tells three things apart, as h11 tells ``LocalProtocolError``
from ``RemoteProtocolError``::

    FsmLiveError
    ├── UsageError (RuntimeError)            the caller: a call at the wrong time or place
    │   ├── TransitionRefused                  a trigger the current state does not allow
    │   └── NotAMember (KeyError)              a fleet key that is not a member
    ├── SpecError (ValueError)               the caller: a spec file or mapping is invalid
    ├── ConfigError (ValueError)             the caller: a setting or argument is invalid
    ├── MissingExtra (ImportError)           the install: a feature needs an extra's package
    ├── CredentialsRejected                  the account: a credentials source refused them
    │                                        (HTTP 401/403 from a token endpoint)
    ├── LiveConnectionError                  the connection: it cannot do that now
    │   ├── ConnectionClosed                   it is closed (by close(), or because of
    │   │                                      the exception it is chained from)
    │   ├── ConnectionFailed                   it is FAILED and needs reset(); carries the Failure
    │   ├── BufferFull                         send() found the outbound buffer at its bound
    │   └── RequestTimeout (TimeoutError)      request() got no acknowledgement in time
    └── TransportError                       the peer or the network: the facts to classify
        └── HandshakeRejected                  the server answered the handshake with an HTTP error

Third-party exceptions (websockets, ssl, OSError, anyio's stream errors) are
translated into :class:`TransportError` in one place,
:mod:`fsm_live.transport.errors`, with ``raise ... from``.  A message an adapter
cannot encode raises Python's own ``TypeError``/``ValueError``, as ``json.dumps``
does.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = (
    "FAILURE_KINDS",
    "BufferFull",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionFailed",
    "CredentialsRejected",
    "Failure",
    "FsmLiveError",
    "HandshakeRejected",
    "LiveConnectionError",
    "MissingExtra",
    "NotAMember",
    "RequestTimeout",
    "SpecError",
    "TransitionRefused",
    "TransportError",
    "UsageError",
)


#: Failure kinds a transport names from an exception's type (never its message); the
#: spec's error table classifies by them.
FAILURE_KINDS: Final = frozenset(
    {
        "refused",
        "reset",
        "dns",
        "timeout",
        "eof",
        "unreachable",
        "registration_rejected",
        "bad_uri",
        "tls",
        "tls_handshake",
        "heartbeat_timeout",
        "credentials",
        "credentials_rejected",
    }
)


@attrs.frozen
class Failure:
    """What went wrong with an attempt or a link, classified.

    ``reason`` is a short human text free of secrets (no headers, no URLs with
    credentials); ``retry_after`` is the server's Retry-After in seconds, if any.
    """

    error_class: str
    reason: str = ""
    kind: str | None = None
    http_status: int | None = None
    close_code: int | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.error_class}: {self.reason}" if self.reason else self.error_class


class FsmLiveError(Exception):
    """Root of every exception fsm_live raises on purpose."""


class UsageError(FsmLiveError, RuntimeError):
    """A call made at the wrong time or place (a connection entered twice, used before
    ``async with``, iterated though it has a handler; a fleet no longer running)."""


class SpecError(FsmLiveError, ValueError):
    """A lifecycle spec is invalid.

    ``problems`` lists every problem found, each already located as
    ``"FILE:LINE: message"`` (or ``"<mapping>: ..."`` for specs built from data),
    so one run of ``fsm-live check`` reports them all.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(FsmLiveError, ValueError):
    """A setting or argument is invalid; ``field`` names it (a Config field, a flag,
    a file key, a parameter)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class MissingExtra(FsmLiveError, ImportError):
    """An optional feature needs a package that is not installed; the message says
    which extra to install (``pip install 'fsm_live[report]'``)."""


class TransitionRefused(UsageError):
    """A trigger was fired in a state that has no transition for it (``rotate()`` while
    not connected, ``reset()`` while not failed)."""

    def __init__(self, state: str, trigger: str) -> None:
        self.state = state
        self.trigger = trigger
        super().__init__(f"trigger {trigger!r} is not allowed in state {state}")


class NotAMember(UsageError, KeyError):
    """A fleet key that is not a member."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if self.args else ""


class LiveConnectionError(FsmLiveError):
    """The connection cannot do what was asked now (see its subclasses)."""


class ConnectionFailed(LiveConnectionError):
    """The connection is in a ``failed`` state of the spec and will not retry by
    itself: it needs ``reset()``.

    ``failure`` says why (its class and a reason free of secrets).
    """

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(f"the connection failed: {failure}")


class ConnectionClosed(LiveConnectionError):
    """The connection is closed: by ``close()``, or because an exception closed it
    (a callback's, a bug's), which this one is chained from (``__cause__``)."""


class BufferFull(LiveConnectionError):
    """``send()`` was called while the outbound buffer holds its maximum."""


class RequestTimeout(LiveConnectionError, TimeoutError):
    """``request()`` got no acknowledgement within its timeout (the frame is no
    longer sent again)."""


class CredentialsRejected(FsmLiveError):
    """A credentials source refused the account's credentials: a token endpoint
    answered HTTP 401 or 403 (the cookies expired), say.  Retrying with the same
    credentials cannot help: the connection goes FAILED (its escalation, e.g. a
    re-login, may recover it).  Raise it from a provider to say so."""


class TransportError(FsmLiveError):
    """A connection attempt or an open link failed.

    It carries the facts the spec's error table classifies by (see
    ``fsm_live.core.classify.Classifier.classify_error``), never message text:
    ``kind`` (named from the exception's type), the handshake's ``http_status``
    (with ``retry_after`` seconds when the server sent Retry-After), or the
    WebSocket ``close_code``.  ``reason`` is for humans and free of secrets.
    """

    def __init__(
        self,
        reason: str,
        *,
        kind: str | None = None,
        http_status: int | None = None,
        close_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.kind = kind
        self.http_status = http_status
        self.close_code = close_code
        self.retry_after = retry_after
        super().__init__(reason)


class HandshakeRejected(TransportError):
    """The server answered the WebSocket handshake with an HTTP error status."""
