"""The clock a worker fences itself by: monotonic, and running while the host sleeps.

A lease's time to live passes on etcd's clock whatever this host does, so a
worker must measure its own deadline on a clock that goes on during a system
suspend: Linux's ``CLOCK_BOOTTIME``.  ``CLOCK_MONOTONIC`` (the event loop's) stops
during a suspend, so a laptop that slept for a minute would wake up believing
its lease had a minute left.  Elsewhere :func:`boottime` is ``time.monotonic``
(which on macOS already counts sleep) and the docs say so.

A clock that runs during a SIGSTOP is all of them: a stopped process's clocks go
on, so its deadline has passed when it resumes.
"""

from __future__ import annotations

import time
from typing import Final

__all__ = ("CLOCK_NAME", "boottime")

_CLOCK: Final = getattr(time, "CLOCK_BOOTTIME", None)
#: Which clock :func:`boottime` reads (shown by ``fsm-live fleet`` and the docs).
CLOCK_NAME: Final = "CLOCK_BOOTTIME" if _CLOCK is not None else "time.monotonic"


def boottime() -> float:
    """Seconds on a monotonic clock that counts suspend (``CLOCK_BOOTTIME``), from an
    arbitrary origin; only differences mean anything."""
    if _CLOCK is None:
        return time.monotonic()
    return time.clock_gettime(_CLOCK)
