"""Outputs of the core: what the runner must do after a step.

Effects are executed in order; each carries what its executor needs, so the
runtime never reads the core's state to carry one out.
"""

from __future__ import annotations

import attrs

__all__ = (
    "CancelTask",
    "CancelTimer",
    "Effect",
    "Emit",
    "ScheduleTimer",
    "StartTask",
    "TransitionRecord",
)


@attrs.frozen
class StartTask:
    """Start the task named ``task``; tag its events with ``generation``.

    What the packaged tasks need from the core comes with it:
    ``refresh_credentials`` (the task that dials refreshes the credentials before
    using them: the last attempt failed with an error whose spec action is
    ``refresh``) and ``may_escalate`` (the escalation task may run the hook:
    fewer than ``max_escalations`` since the connection was last stable; when it
    may not, it reports at once that it did not recover).
    """

    task: str
    generation: int
    refresh_credentials: bool = False
    may_escalate: bool = False


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


Effect = StartTask | CancelTask | ScheduleTimer | CancelTimer | Emit
