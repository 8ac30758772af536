"""Test helpers for fsm_live and for applications built on it.

* :func:`spec_state_machine`: a Hypothesis state machine from any spec
  (needs ``hypothesis``: ``pip install 'fsm_live[testing]'``);
* ``fsm_live.fault_proxy``: a fault-injection TCP proxy (latency, black hole,
  reset, ...) for tests against real sockets on 127.0.0.1.

Names are imported on first use, so the proxy works without Hypothesis installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsm_live.testing.properties import failures, spec_state_machine

__all__ = ("failures", "spec_state_machine")

_LAZY = {"failures": "fsm_live.testing.properties",
         "spec_state_machine": "fsm_live.testing.properties"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
