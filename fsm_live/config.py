"""Configuration: one frozen, validated value with the replaced system's defaults.

Every field is checked at construction; a bad value raises
:class:`~fsm_live.errors.ConfigError` naming the field.  Durations are seconds.

:meth:`Config.load` layers, lowest first: the defaults, a TOML file, ``FSM_LIVE_*``
environment variables, explicit overrides (the CLI's flags).  Keys are the
field names; the backoff policy is a table (``[backoff] policy = "exponential"``
plus its parameters) or ``FSM_LIVE_BACKOFF_POLICY`` / ``FSM_LIVE_BACKOFF_<PARAM>``.
An unknown key or a bad value is an error naming it and where it came from.

=========================  ==========  ==============================================
field                      default     meaning
=========================  ==========  ==============================================
heartbeat_interval         15          send an app-level heartbeat this often
heartbeat_timeout          30          lost when nothing was received for this long
token_refresh_interval     72000       refresh the access token at this age
token_retry_interval       7200        retry a failed token refresh after this long
cookie_refresh_interval    3600        refresh cookies at this age
message_expire_time        300         de-duplicate message ids this long (300000 ms)
dedup_max_entries          10000       at most this many ids remembered
cleanup_interval           60          sweep expired ids this often
max_failures               5           failures in a row before FAILED
max_escalations            1           escalations (re-login) before staying FAILED
failed_retry               true        leave FAILED by itself after retryable failures
failed_retry_delay         (cap)       ... after this long, jittered (default: the
                                       backoff policy's cap, 60 s by default;
                                       at least 1 s)
message_concurrency        100         inbound messages handled at once
outbound_buffer            1000        frames live at once: waiting for a link, in the
                                       write buffer, or awaiting an acknowledgement
open_timeout               10          dial + handshake + registration
close_timeout              5           closing the socket and joining tasks
stability_window           15          up this long (or one heartbeat ack): stable
planned_reconnect_delay    1           jitter ceiling after a planned close (>= 0.01)
retry_after_cap            300         the most a Retry-After is honoured
backoff                    exponential ``ExponentialJitter(1, 60)``; its ceiling >= 0.01
max_size                   1048576     largest inbound message in bytes (close 1009 above)
ack_timeout                60          a frame awaiting its acknowledgement is kept (and
                                       sent again after reconnects) this long;
                                       request()'s default timeout
endpoint_failures          3           failures in a row against an endpoint (of any
                                       connection dialling it) that make it down
probe_interval             1           an endpoint that is down is probed this often
                                       (jittered 50-150 %), by one connection at a time
outage_error_after         60          an endpoint down this long is reported at ERROR
compression                false       permessage-deflate (about 3x memory per link)
trace_stats_interval       60          a trace's stats records at most this often
                                       (docs/diagnostics.md)
=========================  ==========  ==============================================
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from fsm_live.core.backoff import (
    BackoffPolicy,
    ExponentialJitter,
    at_least_min_delay,
    backoff_policy,
)
from fsm_live.errors import ConfigError

__all__ = ("ENV_PREFIX", "MIN_FAILED_RETRY_DELAY", "Config", "checked", "read_toml")

#: Environment variables starting with this configure fsm_live.
ENV_PREFIX: Final = "FSM_LIVE_"
#: A failure count past every policy's growth: its delay bound is the policy's cap.
_MANY_FAILURES: Final = 1000
#: The least ``failed_retry_delay`` (and the floor of its default, the backoff's cap):
#: a connection failing again at once goes FAILED after ``max_failures`` attempts,
#: then waits at least this long (5 attempts a second at most with the defaults).
MIN_FAILED_RETRY_DELAY: Final = 1.0
#: ``FSM_LIVE_*`` names that are not Config fields (read by the CLI).
_ENV_NOT_CONFIG: Final = frozenset({"COOKIES"})


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
    if not isinstance(value, BackoffPolicy):
        raise ConfigError(attribute.name, f"must be a backoff policy, got {value!r}")
    # A policy of the user's own too: its ceiling after many failures, as the built-in
    # ones check theirs (core.backoff.MIN_RETRY_DELAY).
    at_least_min_delay(attribute.name, value.bounds(_MANY_FAILURES, "network")[1])


def _failed_retry_delay(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _seconds(instance, attribute, value)
        if value < MIN_FAILED_RETRY_DELAY:
            raise ConfigError(
                attribute.name,
                f"must be at least {MIN_FAILED_RETRY_DELAY:g} s (shorter retries out of "
                f"a failed state loop), got {value!r}",
            )


def _retry_delay(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    _seconds(instance, attribute, value)
    at_least_min_delay(attribute.name, value)


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
    failed_retry: bool = attrs.field(default=True, validator=_flag)
    failed_retry_delay: float | None = attrs.field(
        default=None, validator=_failed_retry_delay, converter=_as_float
    )
    message_concurrency: int = attrs.field(default=100, validator=_count)
    outbound_buffer: int = attrs.field(default=1000, validator=_count)
    open_timeout: float = _seconds_field(10.0)
    close_timeout: float = _seconds_field(5.0)
    stability_window: float = _seconds_field(15.0)
    planned_reconnect_delay: float = attrs.field(
        default=1.0, validator=_retry_delay, converter=_as_float
    )
    retry_after_cap: float = _seconds_field(300.0)
    backoff: BackoffPolicy = attrs.field(factory=ExponentialJitter, validator=_backoff)
    max_size: int = attrs.field(default=1 << 20, validator=_count)
    ack_timeout: float = _seconds_field(60.0)
    endpoint_failures: int = attrs.field(default=3, validator=_count)
    probe_interval: float = _seconds_field(1.0)
    outage_error_after: float = _seconds_field(60.0)
    compression: bool = attrs.field(default=False, validator=_flag)
    trace_stats_interval: float = _seconds_field(60.0)

    def __attrs_post_init__(self) -> None:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ConfigError(
                "heartbeat_timeout",
                f"must be greater than heartbeat_interval ({self.heartbeat_interval:g}), "
                f"got {self.heartbeat_timeout:g}",
            )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        """Defaults < TOML file ``path`` < ``env`` (default ``os.environ``) < ``overrides``.

        Raises :class:`ConfigError` naming the key (``file.toml: heartbeat_interval``,
        ``FSM_LIVE_MAX_FAILURES``) for unknown keys and bad values, and for a file
        that cannot be read or parsed.
        """
        values: dict[str, Any] = {}
        backoff: dict[str, Any] = {}
        origins: dict[str, str] = {}  # field -> where its value came from
        if path is not None:
            _merge_file(Path(path), values, backoff, origins)
        _merge_env(os.environ if env is None else env, values, backoff, origins)
        for key, value in (overrides or {}).items():
            origins[key.removeprefix("backoff_") if key.startswith("backoff_") else key] = key
            if key.startswith("backoff_") and key != "backoff_policy":
                backoff[key.removeprefix("backoff_")] = value
            elif key == "backoff_policy":
                backoff["policy"] = value
            else:
                values[key] = value
        unknown = set(values) - set(_fields())
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(origins.get(key, key), "unknown setting")
        try:
            if backoff:
                params = dict(backoff)
                name = params.pop("policy", "exponential")
                values["backoff"] = backoff_policy(str(name), **params)
            return cls(**values)
        except ConfigError as error:
            origin = origins.get(error.field)
            if origin is None or origin == error.field:
                raise
            # "f.toml: heartbeat_timeout" names the field already; "FSM_LIVE_X" does not.
            where = origin if origin.endswith(error.field) else f"{origin} ({error.field})"
            raise ConfigError(where, str(error).partition(": ")[2]) from None

    @property
    def failed_retry_after(self) -> float:
        """Seconds a FAILED connection waits before it retries by itself (before jitter):
        ``failed_retry_delay``, else the backoff policy's cap (its ceiling after many
        failures), at least :data:`MIN_FAILED_RETRY_DELAY`."""
        if self.failed_retry_delay is not None:
            return self.failed_retry_delay
        return max(MIN_FAILED_RETRY_DELAY, self.backoff.bounds(_MANY_FAILURES, "network")[1])

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, validated like a new Config."""
        try:
            return attrs.evolve(self, **changes)
        except TypeError as exc:
            raise ConfigError("Config", str(exc)) from None


def _fields() -> dict[str, attrs.Attribute[Any]]:
    return {field.name: field for field in attrs.fields(Config)}


def checked(config: object) -> Config | None:
    """``config`` if it is a :class:`Config` or None (the defaults); anything else (a
    dict of settings, say) is a ConfigError naming ``config``."""
    if config is None or isinstance(config, Config):
        return config
    raise ConfigError(
        "config",
        f"must be a fsm_live.Config (Config(heartbeat_interval=..., ...)), "
        f"got a {type(config).__name__}",
    )


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at ``path`` (a settings file, a fleet file).  Raises
    :class:`ConfigError` naming the file: it cannot be read, is not UTF-8 text, or is
    not valid TOML (nested deeper than Python's recursion limit included; TOML has no
    aliases to expand)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per level of nested arrays and tables
        raise ConfigError(str(path), "not valid TOML: nested too deeply") from None


def _merge_file(
    path: Path, values: dict[str, Any], backoff: dict[str, Any], origins: dict[str, str]
) -> None:
    data = read_toml(path)
    fields = _fields()
    for key, value in data.items():
        if key == "backoff" and isinstance(value, dict):
            backoff.update(value)
            origins.update({param: f"{path}: backoff.{param}" for param in value})
            origins["backoff"] = f"{path}: backoff"
        elif key in fields and key != "backoff":
            values[key] = value
            origins[key] = f"{path}: {key}"
        else:
            raise ConfigError(f"{path}: {key}", "unknown setting")


def _merge_env(
    env: Mapping[str, str], values: dict[str, Any], backoff: dict[str, Any], origins: dict[str, str]
) -> None:
    fields = _fields()
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name.removeprefix(ENV_PREFIX).lower()
        if key.upper() in _ENV_NOT_CONFIG:
            continue
        if key == "backoff_policy":
            backoff["policy"] = text
            origins["backoff"] = name
        elif key.startswith("backoff_"):
            backoff[key.removeprefix("backoff_")] = _parse_number(name, text)
            origins[key.removeprefix("backoff_")] = origins["backoff"] = name
        elif key in fields and key != "backoff":
            values[key] = _parse(name, text, fields[key].type)
            origins[key] = name
        else:
            raise ConfigError(name, "unknown setting")


def _parse(name: str, text: str, kind: Any) -> Any:
    if kind in (bool, "bool"):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"expected true or false, got {text!r}")
    return _parse_number(name, text)


def _parse_number(name: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {text!r}") from None
