"""What a lifecycle reads of its configuration: a protocol, so the core imports no
configuration object (``fsm_live.Config`` provides every attribute)."""

from __future__ import annotations

from typing import Protocol

from fsm_live.core.backoff import BackoffPolicy

__all__ = ("LifecycleSettings",)


class LifecycleSettings(Protocol):
    """The settings :class:`~fsm_live.core.lifecycle.Lifecycle` reads (seconds, counts)."""

    @property
    def heartbeat_interval(self) -> float:
        """A heartbeat goes out this often while connected."""
        ...

    @property
    def heartbeat_timeout(self) -> float:
        """Silence after which a link is lost."""
        ...

    @property
    def token_refresh_interval(self) -> float:
        """The access token is refreshed at this age."""
        ...

    @property
    def token_retry_interval(self) -> float:
        """A failed token refresh is tried again after this long."""
        ...

    @property
    def cookie_refresh_interval(self) -> float:
        """The cookies are refreshed at this age."""
        ...

    @property
    def cleanup_interval(self) -> float:
        """The de-duplication table is swept this often."""
        ...

    @property
    def message_expire_time(self) -> float:
        """An inbound message id is remembered this long."""
        ...

    @property
    def dedup_max_entries(self) -> int:
        """At most this many inbound message ids are remembered."""
        ...

    @property
    def outbound_buffer(self) -> int:
        """Outbound frames live at once (queued, in the write buffer, awaiting an ack)."""
        ...

    @property
    def outage_error_after(self) -> float:
        """An endpoint down this long is reported at ERROR (once per outage)."""
        ...

    @property
    def close_timeout(self) -> float:
        """A released link is aborted if it has not closed within this long."""
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
