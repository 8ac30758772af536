"""fsm_live: keep long-lived WebSocket client connections alive, as an explicit FSM.

The lifecycle is a declarative spec (``specs/connection.yaml``) loaded into one
shared ``transitions.Machine``; a sans-I/O core (:mod:`fsm_live.core`) applies the
policies (backoff, stability, heartbeat deadlines, classification) and an
event-driven engine runs its effects on the sockets.  Start with :func:`connect`;
many connections by key: :class:`Fleet`.

The names here are the public surface (``tests/test_exports.py`` pins them).
Beyond them: :mod:`fsm_live.errors` (the whole exception tree),
:mod:`fsm_live.protocols` and :mod:`fsm_live.lwp` (adapters, cookie credentials),
:mod:`fsm_live.transport` and :mod:`fsm_live.transport.memory` (the transport seam,
an in-memory network for tests), :mod:`fsm_live.core` (the sans-I/O lifecycle),
:mod:`fsm_live.testing` (property tests of specs), :mod:`fsm_live.fault_proxy`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsm_live._runtime.stats import Stats
    from fsm_live._runtime.task_context import TaskContext
    from fsm_live.config import Config
    from fsm_live.connection import LiveConnection, connect
    from fsm_live.core.backoff import ExponentialJitter, FixedDelay
    from fsm_live.core.effects import TransitionRecord
    from fsm_live.counters import Counts
    from fsm_live.credentials import CredentialsProvider, Secret, StaticCredentials
    from fsm_live.errors import (
        BufferFull,
        ConfigError,
        ConnectionClosed,
        ConnectionFailed,
        CredentialsRejected,
        Failure,
        FsmLiveError,
        HandshakeRejected,
        LiveConnectionError,
        MissingExtra,
        NotAMember,
        RequestTimeout,
        SpecError,
        TransitionRefused,
        TransportError,
        UsageError,
    )
    from fsm_live.fleet import Fleet, FleetStats
    from fsm_live.protocols import ProtocolAdapter
    from fsm_live.spec import Spec
    from fsm_live.transport import Transport

    __version__: str

#: Where each public name lives.  They are imported on first use (PEP 562), so that
#: ``import fsm_live.spec`` (``fsm-live check``, say) does not load the runtime.
_HOMES: dict[str, str] = {
    "Stats": "fsm_live._runtime.stats",
    "TaskContext": "fsm_live._runtime.task_context",
    "Counts": "fsm_live.counters",
    "Config": "fsm_live.config",
    "LiveConnection": "fsm_live.connection",
    "connect": "fsm_live.connection",
    "ExponentialJitter": "fsm_live.core.backoff",
    "FixedDelay": "fsm_live.core.backoff",
    "TransitionRecord": "fsm_live.core.effects",
    "CredentialsProvider": "fsm_live.credentials",
    "Secret": "fsm_live.credentials",
    "StaticCredentials": "fsm_live.credentials",
    **dict.fromkeys(
        (
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
        ),
        "fsm_live.errors",
    ),
    "Fleet": "fsm_live.fleet",
    "FleetStats": "fsm_live.fleet",
    "ProtocolAdapter": "fsm_live.protocols",
    "Spec": "fsm_live.spec",
    "Transport": "fsm_live.transport",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("fsm_live")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            value = "0+unknown"
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        if isinstance(value, type) or callable(value):
            # The public path, as httpx names its exports: tracebacks and reprs say
            # fsm_live.ConfigError, not fsm_live.errors.ConfigError.
            value.__module__ = __name__
    else:
        raise AttributeError(f"module 'fsm_live' has no attribute {name!r}")
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = (
    "BufferFull",
    "Config",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionFailed",
    "Counts",
    "CredentialsProvider",
    "CredentialsRejected",
    "ExponentialJitter",
    "Failure",
    "FixedDelay",
    "Fleet",
    "FleetStats",
    "FsmLiveError",
    "HandshakeRejected",
    "LiveConnection",
    "LiveConnectionError",
    "MissingExtra",
    "NotAMember",
    "ProtocolAdapter",
    "RequestTimeout",
    "Secret",
    "Spec",
    "SpecError",
    "StaticCredentials",
    "Stats",
    "TaskContext",
    "TransitionRecord",
    "TransitionRefused",
    "Transport",
    "TransportError",
    "UsageError",
    "__version__",
    "connect",
)
