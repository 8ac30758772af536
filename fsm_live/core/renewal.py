"""When to refresh a credential: by its age, across reconnects, sans-I/O.

A credential (the access token, the cookies) is refreshed ``interval`` seconds
after it was obtained, ``retry_interval`` seconds after a refresh that failed
(the seed's TOKEN_REFRESH_INTERVAL 72000 s and TOKEN_RETRY_INTERVAL 7200 s).  The
age survives reconnects: a link that reconnects more often than ``interval``
still refreshes on time, where a schedule restarted at every connect never would.

A refresh runs only while the state's refresh task is alive (on an open link);
one that falls due while the connection is down is done by the next dial before
it uses the credential (the dial asks :meth:`Renewal.due`).
"""

from __future__ import annotations

import math

__all__ = ("Renewal",)


class Renewal:
    """The refresh schedule of one credential.  Times are the driver's monotonic clock."""

    __slots__ = ("active", "failed", "interval", "retry_interval", "running", "since")

    def __init__(self, interval: float, retry_interval: float) -> None:
        self.interval = interval
        self.retry_interval = retry_interval
        #: When the credential was obtained, or a refresh of it last failed (None: not yet known).
        self.since: float | None = None
        #: The last refresh failed: the next is ``retry_interval`` after it.
        self.failed = False
        #: The state's refresh task is alive: :meth:`deadline` may fire.
        self.active = False
        #: A refresh is running (no second one until it reports).
        self.running = False

    def __repr__(self) -> str:
        return f"<Renewal since={self.since} failed={self.failed}>"

    def obtained(self, now: float) -> None:
        """The credential was first obtained at ``now`` (a no-op once known)."""
        if self.since is None:
            self.since = now

    def due_at(self) -> float:
        """When the next refresh is due (``math.inf`` while the credential's age is unknown)."""
        if self.since is None:
            return math.inf
        return self.since + (self.retry_interval if self.failed else self.interval)

    def due(self, now: float) -> bool:
        """True if a refresh is due at ``now`` and none is running."""
        return not self.running and self.due_at() <= now

    def deadline(self) -> float:
        """When the refresh task should run a refresh (``math.inf``: not now)."""
        if not self.active or self.running:
            return math.inf
        return self.due_at()

    def started(self) -> None:
        """A refresh started (by the task, or by a dial)."""
        self.running = True

    def finished(self, now: float, ok: bool) -> None:
        """The refresh ended at ``now``: on success the credential's age restarts; on
        failure the next try is ``retry_interval`` away."""
        self.running = False
        self.failed = not ok
        self.since = now
