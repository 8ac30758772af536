"""Test helpers for fsm_live and for applications built on it.

* :func:`check_implementation` and :func:`run_steps`: property tests of *your*
  implementation of a spec (a ``transitions`` model, a python-statemachine
  machine, anything behind an :class:`Adapter`), with the spec as the oracle
  (needs ``hypothesis``: ``pip install 'fsm_live[testing]'``);
  :class:`TransitionsAdapter` and :class:`StateMachineAdapter` are ready-made
  adapters; see :mod:`fsm_live.testing.harness`;
* :class:`VirtualClock`: the clock an implementation under test arms its timers
  on, so the harness can check them and make them expire;
* :func:`covering_paths`: walks from the initial state that take every edge and
  every guarded alternative, and probe refusals and blocking guards, for
  ``pytest.mark.parametrize``;
* :func:`spec_state_machine`: a Hypothesis state machine checking a spec run on
  your object with your registry (``subject=``), or fsm_live's own lifecycle on
  a connection spec;
* ``fsm_live.fault_proxy``: a fault-injection TCP proxy (latency, black hole,
  reset, ...) for tests against real sockets on 127.0.0.1.

Names are imported on first use, so the proxy works without Hypothesis installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsm_live.testing.adapters import StateMachineAdapter, TransitionsAdapter
    from fsm_live.testing.clock import TimerHandle, VirtualClock
    from fsm_live.testing.harness import check_implementation, walks
    from fsm_live.testing.paths import covering_paths
    from fsm_live.testing.properties import failures, spec_state_machine
    from fsm_live.testing.steps import Mismatch, MissingEventData, Step, TimerNotArmed
    from fsm_live.testing.walk import Adapter, run_steps

__all__ = (
    "Adapter",
    "Mismatch",
    "MissingEventData",
    "StateMachineAdapter",
    "Step",
    "TimerHandle",
    "TimerNotArmed",
    "TransitionsAdapter",
    "VirtualClock",
    "check_implementation",
    "covering_paths",
    "failures",
    "run_steps",
    "spec_state_machine",
    "walks",
)

_LAZY = {
    "failures": "fsm_live.testing.properties",
    "spec_state_machine": "fsm_live.testing.properties",
    "Adapter": "fsm_live.testing.walk",
    "Mismatch": "fsm_live.testing.steps",
    "MissingEventData": "fsm_live.testing.steps",
    "TimerNotArmed": "fsm_live.testing.steps",
    "TimerHandle": "fsm_live.testing.clock",
    "VirtualClock": "fsm_live.testing.clock",
    "Step": "fsm_live.testing.steps",
    "check_implementation": "fsm_live.testing.harness",
    "run_steps": "fsm_live.testing.walk",
    "walks": "fsm_live.testing.harness",
    "StateMachineAdapter": "fsm_live.testing.adapters",
    "TransitionsAdapter": "fsm_live.testing.adapters",
    "covering_paths": "fsm_live.testing.paths",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
