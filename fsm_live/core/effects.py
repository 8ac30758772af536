"""Outputs of the core: what the driver must do after a step.

Effects are executed in order; each carries what its executor needs, so the
runtime never reads the core's state to carry one out.  The core never starts,
writes or closes anything itself: a link is released (``ReleaseLink``) and
aborted at its close deadline (``AbortLink``), a heartbeat is sent
(``SendHeartbeat``), a credential refreshed (``RunRefresh``), a request given up
(``RequestsExpired``) and a person told (``Notice``) only through these.
"""

from __future__ import annotations

import attrs

__all__ = (
    "AbortLink",
    "CancelTask",
    "CancelTimer",
    "Effect",
    "Emit",
    "Notice",
    "ReleaseLink",
    "RequestsExpired",
    "RunRefresh",
    "ScheduleTimer",
    "SendHeartbeat",
    "StartTask",
    "TransitionRecord",
)


@attrs.frozen
class StartTask:
    """Start the task named ``task``; tag its events with ``generation``.

    What the packaged tasks need from the core comes with it:
    ``refresh_credentials`` (the task that dials refreshes the credentials before
    using them: an attempt failed with an error whose spec action is ``refresh``,
    and no refresh has succeeded since), ``refresh_token`` (it refreshes the access
    token first: the token is older than ``token_refresh_interval``) and
    ``may_escalate`` (the escalation task may run the hook: fewer than
    ``max_escalations`` since the connection was last stable; when it may not, it
    reports at once that it did not recover).
    """

    task: str
    generation: int
    refresh_credentials: bool = False
    may_escalate: bool = False
    refresh_token: bool = False


@attrs.frozen
class CancelTask:
    """Cancel the task ``task`` started with ``generation`` and wait for it to finish."""

    task: str
    generation: int


@attrs.frozen
class ScheduleTimer:
    """The core armed ``timer`` for ``deadline``.  Informational (traces, tests):
    ``next_deadline()`` already accounts for it, and a runtime needs only that."""

    timer: str
    deadline: float


@attrs.frozen
class CancelTimer:
    """The core disarmed ``timer``.  Informational, like :class:`ScheduleTimer`."""

    timer: str


@attrs.frozen
class TransitionRecord:
    """One transition taken: when, from where, to where, by which trigger, and why."""

    at: float
    source: str
    dest: str
    trigger: str
    reason: str = ""
    error_class: str | None = None


@attrs.frozen
class Emit:
    """Report a transition (trace, log, observers)."""

    record: TransitionRecord


@attrs.frozen
class ReleaseLink:
    """The lifecycle left link ``link`` (the generation of the state that dialled it):
    close it with ``code`` (RFC 6455 section 7.4.1: 1000 normal, 1011 after a failure).

    The core keeps its close deadline (``close_timeout`` from now) and emits
    :class:`AbortLink` at it unless the driver reported the link closed first.
    """

    link: int
    code: int


@attrs.frozen
class AbortLink:
    """Link ``link`` did not finish closing within ``close_timeout``: drop it now."""

    link: int


@attrs.frozen
class SendHeartbeat:
    """Send one heartbeat on the current link (a ping frame or the protocol's own),
    then report its id with ``Lifecycle.heartbeat_sent``."""

    generation: int


@attrs.frozen
class RunRefresh:
    """Refresh a credential now (``"token"``: the access token, ``"cookies"``), as a job
    of the state entered with ``generation``; report ``CredentialsRefreshed``."""

    kind: str
    generation: int


@attrs.frozen
class RequestsExpired:
    """Outbound frames whose deadline passed before their acknowledgement: the
    ledger dropped them; their senders get a timeout error.  ``handles`` are the
    ledger entries' ``handle`` values, in the order they were queued."""

    handles: tuple[object, ...]


@attrs.frozen
class Notice:
    """Something a person should read (``level``: a :mod:`logging` level name)."""

    level: str
    message: str


Effect = (
    StartTask
    | CancelTask
    | ScheduleTimer
    | CancelTimer
    | Emit
    | ReleaseLink
    | AbortLink
    | SendHeartbeat
    | RunRefresh
    | RequestsExpired
    | Notice
)
