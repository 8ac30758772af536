"""What a worker holds: an account's :class:`Ownership`, valid until its :class:`Fence`.

A worker may act for an account (dial it, handle a message it received, send on
it) only while it owns it: its claim was confirmed by the coordinator and not
released, and its fence deadline has not passed.  :meth:`Ownership.valid` says
so in one clock read and two comparisons, cheap enough to ask before every
inbound message and every send (``LiveConnection(owned=...)``).

The deadline is on :func:`~fsm_live.cluster.clock.boottime`, the clock that runs
while the host sleeps, and it is *read*, not waited for: a process resumed after
a SIGSTOP (or a suspend) may handle a socket's bytes before any timer of its
event loop fires, and this check is what stops it then.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fsm_live.cluster.clock import boottime

__all__ = ("Fence", "Ownership")


class Fence:
    """One lease's deadline to stop acting, in :func:`boottime` seconds.

    ``deadline`` only moves later while the lease is renewed in time
    (:meth:`extend`), and :meth:`trip` ends it for good.  The in-process
    coordinator's fence never expires (``math.inf``).
    """

    __slots__ = ("clock", "deadline", "tripped")

    def __init__(self, deadline: float = math.inf, clock: Callable[[], float] = boottime) -> None:
        self.deadline = deadline
        self.clock = clock
        self.tripped = False

    def __repr__(self) -> str:
        return f"<Fence {self.remaining():.3f} s left{' (tripped)' if self.tripped else ''}>"

    def valid(self) -> bool:
        """True until the deadline (and never again once tripped)."""
        return self.clock() < self.deadline

    def remaining(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return self.deadline - self.clock()

    def extend(self, deadline: float) -> bool:
        """Move the deadline to ``deadline`` if that is later and the fence is still
        valid; return whether it moved.  A renewal that comes too late renews nothing:
        a fence that passed stays passed."""
        if self.tripped or not self.valid() or deadline <= self.deadline:
            return False
        self.deadline = deadline
        return True

    def trip(self) -> None:
        """End the fence now: every ownership under it is invalid from here on."""
        self.tripped = True
        self.deadline = -math.inf


class Ownership:
    """This worker's hold on ``account``: ``token`` is the fencing token (the owner
    key's create revision in etcd; a counter in process), ``worker`` the holder's id.

    :meth:`valid` is what a connection asks before each inbound message and each
    send; :meth:`release` ends it (the coordinator calls it when the account is
    handed over or lost).
    """

    __slots__ = ("account", "fence", "released", "token", "worker")

    def __init__(self, account: str, worker: str, token: int, fence: Fence) -> None:
        self.account = account
        self.worker = worker
        self.token = token
        self.fence = fence
        self.released = False

    def __repr__(self) -> str:
        return (
            f"<Ownership {self.account!r} by {self.worker!r} token={self.token} "
            f"{'valid' if self.valid() else 'invalid'}>"
        )

    def valid(self) -> bool:
        """True while the account may be acted for: not released, fence not passed."""
        return not self.released and self.fence.valid()

    def release(self) -> None:
        """No longer held (idempotent)."""
        self.released = True
