"""Configuration: one frozen, validated value with the replaced system's defaults.

Every field is checked at construction; a bad value raises
:class:`~fsm_live.errors.ConfigError` naming the field.  Durations are seconds.

=========================  ==========  ==============================================
field                      default     meaning
=========================  ==========  ==============================================
heartbeat_interval         15          send an app-level heartbeat this often
heartbeat_timeout          30          lost when nothing was received for this long
token_refresh_interval     72000       refresh the access token this often
token_retry_interval       7200        retry a failed token refresh after this long
cookie_refresh_interval    3600        refresh cookies this often
message_expire_time        300         de-duplicate message ids this long (300000 ms)
dedup_max_entries          10000       at most this many ids remembered
cleanup_interval           60          sweep expired ids this often
max_failures               5           failures in a row before FAILED
max_escalations            1           escalations (re-login) before staying FAILED
message_concurrency        100         inbound messages handled at once
outbound_buffer            1000        messages buffered while not CONNECTED
open_timeout               10          dial + handshake + registration
close_timeout              5           closing the socket and joining tasks
stability_window           15          up this long (or one heartbeat ack): stable
planned_reconnect_delay    1           jitter ceiling after a planned close
retry_after_cap            300         the most a Retry-After is honoured
backoff                    exponential ``ExponentialJitter(1, 60)``
max_size                   1048576     largest inbound message in bytes (close 1009 above)
max_queue                  16          inbound frames websockets buffers per link
compression                false       permessage-deflate (about 3x memory per link)
=========================  ==========  ==============================================
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from fsm_live.core.backoff import BackoffPolicy, ExponentialJitter
from fsm_live.errors import ConfigError

__all__ = ("Config",)


def _seconds(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(attribute.name, f"must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(attribute.name, f"must be a positive finite number, got {value!r}")


def _count(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(attribute.name, f"must be a whole number >= 1, got {value!r}")


def _count_or_zero(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(attribute.name, f"must be a whole number >= 0, got {value!r}")


def _flag(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(attribute.name, f"must be true or false, got {value!r}")


def _backoff(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (callable(getattr(value, "delay", None)) and callable(getattr(value, "bounds", None))):
        raise ConfigError(attribute.name, f"must be a backoff policy, got {value!r}")


def _seconds_field(default: float) -> Any:
    return attrs.field(default=default, validator=_seconds, converter=_as_float)


def _as_float(value: Any) -> Any:
    # ints become floats; anything else is left for the validator to reject by name.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


@attrs.frozen(kw_only=True)
class Config:
    """How one connection behaves.  See the module docstring for every field."""

    heartbeat_interval: float = _seconds_field(15.0)
    heartbeat_timeout: float = _seconds_field(30.0)
    token_refresh_interval: float = _seconds_field(72000.0)
    token_retry_interval: float = _seconds_field(7200.0)
    cookie_refresh_interval: float = _seconds_field(3600.0)
    message_expire_time: float = _seconds_field(300.0)
    dedup_max_entries: int = attrs.field(default=10_000, validator=_count)
    cleanup_interval: float = _seconds_field(60.0)
    max_failures: int = attrs.field(default=5, validator=_count)
    max_escalations: int = attrs.field(default=1, validator=_count_or_zero)
    message_concurrency: int = attrs.field(default=100, validator=_count)
    outbound_buffer: int = attrs.field(default=1000, validator=_count)
    open_timeout: float = _seconds_field(10.0)
    close_timeout: float = _seconds_field(5.0)
    stability_window: float = _seconds_field(15.0)
    planned_reconnect_delay: float = _seconds_field(1.0)
    retry_after_cap: float = _seconds_field(300.0)
    backoff: BackoffPolicy = attrs.field(factory=ExponentialJitter, validator=_backoff)
    max_size: int = attrs.field(default=1 << 20, validator=_count)
    max_queue: int = attrs.field(default=16, validator=_count)
    compression: bool = attrs.field(default=False, validator=_flag)

    def __attrs_post_init__(self) -> None:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ConfigError(
                "heartbeat_timeout",
                f"must be greater than heartbeat_interval ({self.heartbeat_interval:g}), "
                f"got {self.heartbeat_timeout:g}",
            )

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, validated like a new Config."""
        try:
            return attrs.evolve(self, **changes)
        except TypeError as exc:
            raise ConfigError("Config", str(exc)) from None
