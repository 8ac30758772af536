"""The sans-I/O core: a connection's lifecycle as a pure state machine.

Nothing in this package sleeps, opens a socket, or imports anyio, websockets or
rich.  Events stamped with ``now`` go in; effects and the next deadline come out.
"""

from __future__ import annotations

from fsm_live.core.backoff import (
    BackoffPolicy,
    ByErrorClass,
    ExponentialJitter,
    FixedDelay,
    backoff_policy,
)
from fsm_live.core.classify import Classifier
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.lifecycle import Lifecycle, LifecycleMachine
from fsm_live.core.pacing import ReconnectPacer

__all__ = (
    "BackoffPolicy",
    "ByErrorClass",
    "Classifier",
    "ExponentialJitter",
    "FixedDelay",
    "Lifecycle",
    "LifecycleMachine",
    "ReconnectPacer",
    "TransitionRecord",
    "backoff_policy",
)
