"""Many live connections in one process, one per key (say, an account id).

:class:`Fleet` (in :mod:`fsm_live.fleet._fleet`) runs them; :mod:`fsm_live.fleet.stats`
adds up their figures; :mod:`fsm_live.fleet.config` reads fleet files
(``fsm-live fleet FILE``).  See docs/fleet.md.
"""

from __future__ import annotations

from fsm_live.fleet._fleet import DEFAULT_RECONNECTS_PER_SECOND, Fleet, FleetObserver
from fsm_live.fleet.config import Account, FleetConfig
from fsm_live.fleet.stats import ConnectionSummary, FleetStats, FleetTransition

__all__ = (
    "DEFAULT_RECONNECTS_PER_SECOND",
    "Account",
    "ConnectionSummary",
    "Fleet",
    "FleetConfig",
    "FleetObserver",
    "FleetStats",
    "FleetTransition",
)
