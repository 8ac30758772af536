"""Inputs of the core: what happened, each stamped with ``now``.

``now`` is monotonic seconds (the runner uses ``anyio.current_time()``).  Events
that come from a task carry the ``generation`` the task was started with; the
core drops events whose generation is stale (docs/architecture.md, rule 4).
"""

from __future__ import annotations

import attrs

from fsm_live.core.classify import Failure
from fsm_live.core.endpoint import EndpointChanged

__all__ = (
    "Close",
    "CredentialsRefreshed",
    "EndpointChanged",
    "EscalationFinished",
    "Event",
    "HeartbeatAcked",
    "Inbound",
    "LinkClosed",
    "LinkFailed",
    "MessageReceived",
    "Opened",
    "ReadingPaused",
    "ReadingResumed",
    "Reset",
    "Rotate",
    "Start",
    "Tick",
    "TriggerFired",
)


@attrs.frozen
class Start:
    """The application starts the connection."""

    now: float


@attrs.frozen
class Close:
    """The application closes the connection (from any state)."""

    now: float
    reason: str = "closed by the application"


@attrs.frozen
class Reset:
    """The application resets a failed connection: its failure count is cleared and
    it retries (the spec's ``reset`` edge)."""

    now: float
    reason: str = "reset by the application"


@attrs.frozen
class Tick:
    """Time passed: fire the timers due at ``now``."""

    now: float


@attrs.frozen
class Opened:
    """The dial task connected and the protocol handshake (registration) succeeded."""

    now: float
    generation: int


@attrs.frozen
class LinkFailed:
    """The dial failed, or the open link failed; ``failure`` says how."""

    now: float
    generation: int
    failure: Failure


@attrs.frozen
class Inbound:
    """A frame arrived at ``now``: the link is alive."""

    now: float
    generation: int


@attrs.frozen
class MessageReceived:
    """An application message arrived at ``now``: the session works.

    Like a heartbeat ack, it proves the session (ends the stability window).
    """

    now: float
    generation: int


@attrs.frozen
class ReadingPaused:
    """The application is behind: the client stopped reading the link at ``now``.

    Silence that follows is ours, not the peer's: the heartbeat timeout is
    suspended until :class:`ReadingResumed`.
    """

    now: float
    generation: int


@attrs.frozen
class ReadingResumed:
    """The client reads the link again from ``now``; the heartbeat timeout counts
    from here."""

    now: float
    generation: int


@attrs.frozen
class HeartbeatAcked:
    """The peer acknowledged a heartbeat (matched by id); ``rtt`` in seconds."""

    now: float
    generation: int
    rtt: float


@attrs.frozen
class Rotate:
    """Reconnect on purpose (e.g. to apply a refreshed token): no failure counted."""

    now: float
    generation: int
    reason: str = "rotate"


@attrs.frozen
class EscalationFinished:
    """The escalation hook (e.g. re-login) finished; ``ok`` says whether it succeeded."""

    now: float
    generation: int
    ok: bool
    reason: str = ""


@attrs.frozen
class CredentialsRefreshed:
    """A credential refresh ended at ``now``: ``kind`` is ``"auth"`` (after an auth
    failure, before a dial), ``"token"`` or ``"cookies"`` (by age); ``ok`` says
    whether it succeeded, ``changed`` whether the credential differs (a new token on
    an open link is applied by a planned ``rotate``)."""

    now: float
    generation: int
    kind: str
    ok: bool
    changed: bool = False


@attrs.frozen
class LinkClosed:
    """Link ``link`` (see :class:`~fsm_live.core.effects.ReleaseLink`) is closed: its
    byte stream ended.  Not generation-tagged: a link outlives its state."""

    now: float
    link: int


@attrs.frozen
class TriggerFired:
    """A task of the spec's own (bound in a Registry) fires one of the spec's triggers."""

    now: float
    generation: int
    trigger: str
    reason: str = ""


Event = (
    EndpointChanged
    | CredentialsRefreshed
    | LinkClosed
    | Start
    | Close
    | Reset
    | Tick
    | Opened
    | LinkFailed
    | Inbound
    | MessageReceived
    | ReadingPaused
    | ReadingResumed
    | HeartbeatAcked
    | Rotate
    | EscalationFinished
    | TriggerFired
)
