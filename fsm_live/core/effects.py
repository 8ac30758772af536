"""Outputs of the core: what the runner must do after a step.

Effects are executed in order.  A cancelled task must be joined before the
runner goes on (ARCHITECTURE.md, runner rule 3).
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
    """Start the task named ``task``; tag its events with ``generation``."""

    task: str
    generation: int


@attrs.frozen
class CancelTask:
    """Cancel the task ``task`` started with ``generation`` and wait for it to finish."""

    task: str
    generation: int


@attrs.frozen
class ScheduleTimer:
    """The core armed ``timer`` for ``deadline``; ``next_deadline()`` already accounts for it."""

    timer: str
    deadline: float


@attrs.frozen
class CancelTimer:
    """The core disarmed ``timer``."""

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
