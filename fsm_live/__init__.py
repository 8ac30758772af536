"""fsm_live: keep long-lived WebSocket client connections alive, as an explicit FSM.

The lifecycle is a declarative spec (``specs/connection.yaml``) loaded into one
shared ``transitions.Machine``; a sans-I/O core applies the policies (backoff,
stability, heartbeat deadlines, classification) and an anyio runner executes
its effects.  Start with :func:`connect`; many connections by key: :class:`Fleet`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fsm_live._runtime.stats import Stats
from fsm_live.config import Config
from fsm_live.connection import LiveConnection, connect, default_machine, get_protocol
from fsm_live.core.backoff import ByErrorClass, ExponentialJitter, FixedDelay, backoff_policy
from fsm_live.core.classify import Classifier, Failure
from fsm_live.core.lifecycle import Lifecycle, LifecycleMachine
from fsm_live.core.pacing import ReconnectPacer
from fsm_live.credentials import CredentialsProvider, Secret, StaticCredentials
from fsm_live.errors import (
    BufferFull,
    ConfigError,
    ConnectionClosed,
    ConnectionFailed,
    FsmLiveError,
    HandshakeRejected,
    SpecError,
    TransitionRefused,
    TransportError,
)
from fsm_live.fleet import Fleet
from fsm_live.fleet.stats import FleetStats
from fsm_live.protocols import JsonProtocol, PingProtocol, ProtocolAdapter
from fsm_live.spec import Spec

try:
    __version__ = version("fsm_live")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = (
    "BufferFull",
    "ByErrorClass",
    "Classifier",
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
    "HandshakeRejected",
    "JsonProtocol",
    "Lifecycle",
    "LifecycleMachine",
    "LiveConnection",
    "PingProtocol",
    "ProtocolAdapter",
    "ReconnectPacer",
    "Secret",
    "Spec",
    "SpecError",
    "StaticCredentials",
    "Stats",
    "TransitionRefused",
    "TransportError",
    "__version__",
    "backoff_policy",
    "connect",
    "default_machine",
    "get_protocol",
)
