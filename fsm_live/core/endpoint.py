"""Is the endpoint up?  One answer for every connection that dials it, sans-I/O.

A fleet keeps many connections to one endpoint (host, port, proxy).  When its
server goes away, every member fails the same way: counted per member, each
would back off on its own (N members, N dials every backoff, a crowd when the
server returns) and go FAILED though nothing is wrong with it.  An
:class:`Endpoint` is shared by the connections that dial it (a
:class:`~fsm_live.fleet.Fleet`'s members by their target, or one connection
alone) and decides for all of them:

* **down**: after ``down_after`` failures in a row, of any of its connections, of
  an error class the spec marks ``endpoint: true`` (network, server, lost), with no
  connect in between.  A connection that fails that way then waits (the spec's
  ``WAITING`` state, reached by ``wait`` under the ``endpoint_down`` guard), and so
  do the others once their backoff is over: none dials on its own, none counts the
  outage toward ``max_failures``;
* **probing**: one waiting connection at a time (the *prober*, taken in turn) dials;
  the gaps between probes grow from :data:`FIRST_PROBE_GAP` (0.5 s), doubling, up to
  ``probe_interval``, each jittered by ±50 %, and never before a server's
  ``Retry-After``: at most one dial per gap for the whole endpoint, however many
  connections wait, and never a spin;
* **up**: when a connection connects.  Every waiting connection is told at once and
  reconnects, paced by the fleet's :class:`~fsm_live.core.pacing.ReconnectPacer`.

It keeps no clock and starts nothing: its inputs carry ``now``, and what the
connections must hear is handed to ``deliver(member, event)``, which the runtime
sets (each member's driver feeds the event to its own core: docs/architecture.md,
rule 1).  Members are the connections' lifecycles; the endpoint only keeps and
returns them.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Hashable
from typing import Final

import attrs

__all__ = (
    "DOWN",
    "FIRST_PROBE_GAP",
    "PROBE",
    "UP",
    "Endpoint",
    "EndpointChanged",
    "EndpointStatus",
)

#: The first gap before a probe (seconds, before jitter); each failed probe doubles it,
#: up to the endpoint's ``probe_interval``.
FIRST_PROBE_GAP: Final = 0.5

#: What ``deliver`` is told, with the member it concerns.
DOWN: Final = "down"  # the endpoint went down: a member backing off waits instead
UP: Final = "up"  # it is back: a waiting member reconnects
PROBE: Final = "probe"  # this member is the prober now: its probe deadline moved


@attrs.frozen
class EndpointChanged:
    """What a member hears of its endpoint (``what``: :data:`DOWN`, :data:`UP` or
    :data:`PROBE`), at ``now``."""

    now: float
    what: str


@attrs.frozen
class EndpointStatus:
    """What is known of one endpoint, for the dashboard and the fleet's stats.

    * ``endpoint``: how the operator names it: ``host:port``, and the proxy when
      members dial through one (``example.org:443 via socks5://proxy:1080``);
    * ``up``: whether members reach it; ``since``: when that last changed (the
      driver's clock, as ``Fleet.started_at``);
    * ``probing``: while down, whether a probe is dialling it now;
    * ``members``: the connections that dial it;
    * ``next_probe``: while down and no probe dials, when the next one is due (the
      same clock as ``since``; it may have just passed); None while up, while a
      probe dials, and while no member waits to probe.
    """

    endpoint: str
    up: bool
    since: float
    probing: bool = False
    members: int = 0
    next_probe: float | None = None


class Endpoint:
    """The health of one endpoint, shared by the connections that dial it.

    ``key`` names it in logs and views (``host:port``, and the proxy if any).
    ``down_after`` failures in a row make it down; ``probe_interval`` is the longest
    gap between probes (seconds; gaps are jittered by ±50 % with ``random``, floats
    in [0, 1)).
    """

    __slots__ = (
        "_members",
        "_not_before",
        "_probe_due",
        "_prober",
        "_probes",
        "_probing",
        "_streak",
        "_waiting",
        "deliver",
        "down_after",
        "down_since",
        "key",
        "probe_interval",
        "random",
        "reported",
        "since",
    )

    def __init__(
        self,
        key: str,
        *,
        down_after: int = 3,
        probe_interval: float = 1.0,
        random: Callable[[], float] | None = None,
        now: float = 0.0,
    ) -> None:
        self.key = key
        #: When it last went down or came back (``now`` at first).
        self.since = now
        self.down_after = down_after
        self.probe_interval = probe_interval
        self.random = random or _random.random
        #: When it went down (None: up).
        self.down_since: float | None = None
        #: The outage was reported at ERROR (once per outage).
        self.reported = False
        #: How the members hear of it (set by the runtime; a no-op until then).
        self.deliver: Callable[[Hashable, EndpointChanged], None] = _nowhere
        self._streak = 0  # endpoint failures in a row
        self._members: set[Hashable] = set()
        self._waiting: dict[Hashable, None] = {}  # waiting members, in the order they came
        self._prober: Hashable | None = None
        self._probe_due = math.inf
        self._not_before = -math.inf  # no probe before (a server's Retry-After)
        self._probing = False  # the prober is dialling
        self._probes = 0  # probes made in this outage

    def __repr__(self) -> str:
        state = "up" if self.up else f"down since {self.down_since}"
        return f"<Endpoint {self.key} {state}, {len(self._members)} members>"

    # -- queries -----------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """True unless it is down."""
        return self.down_since is None

    @property
    def members(self) -> int:
        """Connections that dial it."""
        return len(self._members)

    @property
    def waiting(self) -> int:
        """Members waiting for it."""
        return len(self._waiting)

    def status(self) -> EndpointStatus:
        """For a person: up or down since when, probing or when the next probe is
        due, how many members."""
        next_probe = None
        if not self.up and self._prober is not None and not self._probing:
            next_probe = self._probe_due
        return EndpointStatus(
            self.key, self.up, self.since, self._probing, self.members, next_probe
        )

    def probe_deadline(self, member: Hashable) -> float:
        """When ``member`` dials to probe (``math.inf`` unless it is the prober)."""
        return self._probe_due if member == self._prober and not self._probing else math.inf

    # -- inputs --------------------------------------------------------------------------

    def join(self, member: Hashable) -> None:
        """A connection dials this endpoint from now on."""
        self._members.add(member)

    def leave(self, member: Hashable, now: float) -> None:
        """A connection no longer dials it (it closed)."""
        self._members.discard(member)
        self.resume(member, now)

    def failed(self, member: Hashable, now: float, retry_after: float = 0.0) -> bool:
        """An attempt of ``member`` failed with an endpoint class; True if the endpoint
        is down now (the member waits), False if it is up (the member backs off).  A
        probe that failed hands the turn on: the member waits at the back of the line.
        ``retry_after`` (seconds, already capped by the caller): the server asked for
        that long (HTTP 503 ``Retry-After``): no probe before then."""
        if member == self._prober:
            self._prober, self._probing = None, False
        self._not_before = max(self._not_before, now + retry_after)
        self._streak += 1
        if self.down_since is None:
            if self._streak < self.down_after:
                return False
            self.down_since = self.since = now
            self.reported = False
            self._probes = 0
            for other in list(self._members):  # a member may leave while it hears
                if other != member:
                    self.deliver(other, EndpointChanged(now, DOWN))
        return True

    def connected(self, member: Hashable, now: float) -> float | None:
        """``member`` connected: the endpoint is up.  Returns how long it was down (its
        waiting members are told to reconnect), or None if it was up."""
        self._streak = 0
        self.resume(member, now)
        down_since, self.down_since = self.down_since, None
        if down_since is None:
            return None
        self.since = now
        self._prober, self._probe_due, self._probing = None, math.inf, False
        self._not_before = -math.inf
        for other in list(self._waiting):
            self.deliver(other, EndpointChanged(now, UP))
        return now - down_since

    def alive(self) -> None:
        """A member's link showed the endpoint working (a heartbeat ack): failures of
        other members are no longer "in a row"."""
        self._streak = 0

    def wait(self, member: Hashable, now: float) -> None:
        """``member`` waits for the endpoint (it entered the waiting state)."""
        self._waiting[member] = None
        self._elect(now)

    def resume(self, member: Hashable, now: float) -> None:
        """``member`` stopped waiting (it probes, reconnects or closed)."""
        self._waiting.pop(member, None)
        if member == self._prober and not self._probing:
            self._prober = None
            self._elect(now)

    def probing(self, member: Hashable) -> None:
        """The prober dials now (its probe deadline passed)."""
        if member == self._prober:
            self._probing = True
            self._waiting.pop(member, None)

    def due_report(self, now: float, bound: float) -> float | None:
        """If the outage passed ``bound`` seconds and was not reported yet: mark it
        reported and return how long it lasts; else None."""
        if self.down_since is None or self.reported or now - self.down_since < bound:
            return None
        self.reported = True
        return now - self.down_since

    # -- internals ---------------------------------------------------------------------

    def _elect(self, now: float) -> None:
        """The next waiting member (the longest waiting) probes one jittered interval
        from now; it is told so."""
        if self._prober is not None or not self._waiting or self.down_since is None:
            return
        prober = next(iter(self._waiting))
        # The prober goes to the back of the line: probes go round the members.
        del self._waiting[prober]
        self._waiting[prober] = None
        self._prober = prober
        gap = min(self.probe_interval, FIRST_PROBE_GAP * 2.0 ** min(self._probes, 32))
        self._probes += 1
        self._probe_due = max(now + gap * (0.5 + self.random()), self._not_before)
        self.deliver(prober, EndpointChanged(now, PROBE))


def _nowhere(member: Hashable, event: EndpointChanged) -> None:
    """The default ``deliver``: nobody to tell."""
