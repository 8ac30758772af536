"""What a lifecycle reads of its configuration: a protocol, so the core imports no
configuration object (``fsm_live.Config`` provides every attribute)."""

from __future__ import annotations

from typing import Protocol

from fsm_live.core.backoff import BackoffPolicy

__all__ = ("LifecycleSettings",)


class LifecycleSettings(Protocol):
    """The settings :class:`~fsm_live.core.lifecycle.Lifecycle` reads (seconds, counts)."""

    @property
    def heartbeat_timeout(self) -> float:
        """Silence after which a link is lost."""
        ...

    @property
    def open_timeout(self) -> float:
        """Dial, handshake and registration together."""
        ...

    @property
    def stability_window(self) -> float:
        """Up this long (or proved by an ack or a message): the failure count resets."""
        ...

    @property
    def planned_reconnect_delay(self) -> float:
        """The jitter ceiling after a planned close of a stable connection."""
        ...

    @property
    def retry_after_cap(self) -> float:
        """The longest Retry-After honoured."""
        ...

    @property
    def backoff(self) -> BackoffPolicy:
        """The delay before the next attempt."""
        ...

    @property
    def max_failures(self) -> int:
        """Failures in a row before the failed state."""
        ...

    @property
    def max_escalations(self) -> int:
        """Escalations between stable connections."""
        ...

    @property
    def failed_retry(self) -> bool:
        """Whether a failed state reached by retryable failures retries by itself."""
        ...

    @property
    def failed_retry_after(self) -> float:
        """How long it waits first (before jitter)."""
        ...
