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

from importlib.metadata import PackageNotFoundError, version

from fsm_live._runtime.stats import Stats
from fsm_live.config import Config
from fsm_live.connection import LiveConnection, connect
from fsm_live.core.backoff import ExponentialJitter, FixedDelay
from fsm_live.core.effects import TransitionRecord
from fsm_live.credentials import CredentialsProvider, Secret, StaticCredentials
from fsm_live.errors import (
    BufferFull,
    ConfigError,
    ConnectionClosed,
    ConnectionFailed,
    Failure,
    FsmLiveError,
    TransitionRefused,
)
from fsm_live.fleet import Fleet, FleetStats
from fsm_live.protocols import ProtocolAdapter
from fsm_live.spec import Spec
from fsm_live.transport import Transport

try:
    __version__ = version("fsm_live")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = (
    "BufferFull",
    "Config",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionFailed",
    "CredentialsProvider",
    "ExponentialJitter",
    "Failure",
    "FixedDelay",
    "Fleet",
    "FleetStats",
    "FsmLiveError",
    "LiveConnection",
    "ProtocolAdapter",
    "Secret",
    "Spec",
    "StaticCredentials",
    "Stats",
    "TransitionRecord",
    "TransitionRefused",
    "Transport",
    "__version__",
    "connect",
)
