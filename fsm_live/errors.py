"""The exceptions fsm_live raises.

Every exception derives from :class:`FsmLiveError`; where a builtin fits, it is a
base too, so ``except ValueError`` keeps working for bad input.  The tree splits
mistakes of the caller (bad spec, bad config, an event the state does not allow)
from things that happened to the connection (the peer or the network)::

    FsmLiveError
    ├── SpecError (ValueError)            a spec file or mapping is invalid
    ├── ConfigError (ValueError)          a Config field is invalid
    ├── TransitionRefused (RuntimeError)  a trigger the current state does not allow
    ├── ConnectionFailed                  the connection ended FAILED; carries the Failure
    ├── ConnectionClosedByApp             the connection was closed by the application
    ├── BufferFull                        the outbound buffer is at its bound
    └── TransportError                    an attempt or an open link failed: the facts to classify
        └── HandshakeRejected             the server answered the handshake with an HTTP error

Third-party exceptions (websockets, ssl, OSError) are translated into
:class:`TransportError` in one place, ``fsm_live.transport``, with ``raise ... from``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fsm_live.core.classify import Failure

__all__ = (
    "FAILURE_KINDS",
    "BufferFull",
    "ConfigError",
    "ConnectionClosedByApp",
    "ConnectionFailed",
    "FsmLiveError",
    "HandshakeRejected",
    "SpecError",
    "TransitionRefused",
    "TransportError",
)


#: Failure kinds a transport names from an exception's type (never its message); the
#: spec's error table classifies by them.
FAILURE_KINDS: Final = frozenset(
    {"refused", "reset", "dns", "timeout", "eof", "unreachable", "registration_rejected",
     "bad_uri", "tls", "tls_handshake", "heartbeat_timeout", "credentials"}
)


class FsmLiveError(Exception):
    """Root of every exception fsm_live raises on purpose."""


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
    """A configuration value is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class TransitionRefused(FsmLiveError, RuntimeError):
    """A trigger was fired in a state that has no transition for it."""

    def __init__(self, state: str, trigger: str) -> None:
        self.state = state
        self.trigger = trigger
        super().__init__(f"trigger {trigger!r} is not allowed in state {state}")


class ConnectionFailed(FsmLiveError):
    """The connection is FAILED and will not retry by itself.

    ``failure`` says why (its class and a reason free of secrets).
    """

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(f"connection FAILED: {failure}")


class ConnectionClosedByApp(FsmLiveError):
    """The operation cannot complete: the application closed the connection."""


class BufferFull(FsmLiveError):
    """``send()`` was called while the outbound buffer holds its maximum."""


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
