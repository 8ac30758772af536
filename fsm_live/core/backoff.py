"""Backoff policies: how long to wait before the next connection attempt.

Pure and deterministic given a random source: ``delay(failures, error_class,
random)`` where ``random()`` returns a float in [0, 1).  ``bounds()`` gives the
closed interval every delay falls in, for property tests and documentation.

A delay that never grows past a few microseconds retries in a hot loop (a server
answering 500 at once got 3,779 attempts in 5 s, a core busy, 55,000 log lines),
so the built-in policies refuse a ceiling below :data:`MIN_RETRY_DELAY`: the
delay of ``fixed``, the ``maximum`` of ``exponential`` (its ``initial`` when
``factor`` is 1), each step and cap of ``by_error_class`` (ConfigError naming the
parameter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from fsm_live.errors import ConfigError

__all__ = (
    "BACKOFF_POLICIES",
    "MIN_RETRY_DELAY",
    "BackoffPolicy",
    "ByErrorClass",
    "ExponentialJitter",
    "FixedDelay",
    "backoff_policy",
)

RandomSource = Callable[[], float]

#: The least ceiling a backoff delay may have, in seconds: at most 100 attempts a
#: second while failures keep coming (measured: 85 a second against a local server
#: answering 500, about a fifth of a core for both ends; with 0 it was 256).
MIN_RETRY_DELAY: Final = 0.01


@runtime_checkable
class BackoffPolicy(Protocol):
    """The delay before attempt number ``failures + 1``."""

    def delay(self, failures: int, error_class: str, random: RandomSource) -> float:
        """A delay in seconds within :meth:`bounds`; ``failures`` counts from 1."""
        ...

    def bounds(self, failures: int, error_class: str) -> tuple[float, float]:
        """The smallest and largest delay :meth:`delay` may return."""
        ...


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(attribute.name, f"must be a finite number >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _non_negative(instance, attribute, value)
    if value == 0:
        raise ConfigError(attribute.name, "must be > 0")


def at_least_min_delay(name: str, value: float) -> None:
    """Raise ConfigError (field ``name``) unless ``value`` is at least
    :data:`MIN_RETRY_DELAY` seconds."""
    if value < MIN_RETRY_DELAY:
        raise ConfigError(
            name,
            f"must be at least {MIN_RETRY_DELAY} s (shorter delays retry in a hot loop), "
            f"got {value!r}",
        )


def _retry_delay(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _non_negative(instance, attribute, value)
    at_least_min_delay(attribute.name, value)


def _steps(
    instance: object, attribute: attrs.Attribute[tuple[float, float]], value: object
) -> None:
    """A ``(step, cap)`` pair of delays, each at least :data:`MIN_RETRY_DELAY`."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise ConfigError(attribute.name, f"must be a (step, cap) pair of seconds, got {value!r}")
    for part in value:
        if isinstance(part, bool) or not isinstance(part, int | float) or not math.isfinite(part):
            raise ConfigError(attribute.name, f"must be finite numbers, got {value!r}")
        at_least_min_delay(attribute.name, part)


@attrs.frozen
class ExponentialJitter:
    """Exponential backoff with full jitter (the default).

    The ceiling grows ``initial * factor ** (failures - 1)`` up to ``maximum``; the
    delay is uniform in ``[floor, ceiling]``.  Jitter stays on at the cap, so a
    fleet that failed together does not retry together.
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    maximum: float = attrs.field(default=60.0, validator=_positive)
    factor: float = attrs.field(default=2.0, validator=_positive)
    floor: float = attrs.field(default=0.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.factor < 1:
            raise ConfigError("factor", f"must be >= 1, got {self.factor!r}")
        if self.maximum < self.initial:
            raise ConfigError(
                "maximum", f"must be >= initial ({self.initial}), got {self.maximum!r}"
            )
        if self.floor > self.initial:
            raise ConfigError("floor", f"must be <= initial ({self.initial}), got {self.floor!r}")
        # The ceiling it keeps once failures go on: maximum, or initial if it never grows.
        if self.factor == 1:
            at_least_min_delay("initial", self.initial)
        else:
            at_least_min_delay("maximum", self.maximum)

    def bounds(self, failures: int, error_class: str) -> tuple[float, float]:
        exponent = max(failures, 1) - 1
        # Compare in logs: past the cap the power itself would overflow.
        if exponent * math.log(self.factor) >= math.log(self.maximum / self.initial):
            return self.floor, self.maximum
        return self.floor, self.initial * float(self.factor) ** exponent

    def delay(self, failures: int, error_class: str, random: RandomSource) -> float:
        low, high = self.bounds(failures, error_class)
        return low + (high - low) * random()


@attrs.frozen
class ByErrorClass:
    """The replaced system's policy: linear by error class, no jitter.

    ``step * failures`` seconds, capped, with (step, cap) chosen by class: an
    abrupt close (classes ``lost``, ``planned``, ``protocol``, ``retry``) 3 s / 15 s,
    ``network`` 10 s / 60 s, anything else 5 s / 30 s.  Kept for comparison and
    compatibility; it retries a fleet in lockstep.
    """

    abrupt: tuple[float, float] = attrs.field(default=(3.0, 15.0), validator=_steps)
    network: tuple[float, float] = attrs.field(default=(10.0, 60.0), validator=_steps)
    other: tuple[float, float] = attrs.field(default=(5.0, 30.0), validator=_steps)
    abrupt_classes: frozenset[str] = frozenset({"lost", "planned", "protocol", "retry"})

    def _step_and_cap(self, error_class: str) -> tuple[float, float]:
        if error_class in self.abrupt_classes:
            return self.abrupt
        if error_class == "network":
            return self.network
        return self.other

    def bounds(self, failures: int, error_class: str) -> tuple[float, float]:
        step, cap = self._step_and_cap(error_class)
        value = min(cap, step * max(failures, 1))
        return value, value

    def delay(self, failures: int, error_class: str, random: RandomSource) -> float:
        return self.bounds(failures, error_class)[0]


@attrs.frozen
class FixedDelay:
    """The same delay every time (no jitter)."""

    seconds: float = attrs.field(default=5.0, validator=_retry_delay)

    def bounds(self, failures: int, error_class: str) -> tuple[float, float]:
        return self.seconds, self.seconds

    def delay(self, failures: int, error_class: str, random: RandomSource) -> float:
        return self.seconds


#: Policies by the names configuration files and the CLI use.
BACKOFF_POLICIES: Final[dict[str, Callable[..., BackoffPolicy]]] = {
    "exponential": ExponentialJitter,
    "by_error_class": ByErrorClass,
    "fixed": FixedDelay,
}


def backoff_policy(name: str, **params: Any) -> BackoffPolicy:
    """Build a policy by name (``exponential``, ``by_error_class``, ``fixed``).

    Raises :class:`ConfigError` for an unknown name (field ``backoff``), a
    parameter the policy does not have (field: that parameter, as the policies
    name their own bad values, so :meth:`Config.load` can say where it was set;
    the message lists the policy's parameters), or a bad value.
    """
    try:
        factory = BACKOFF_POLICIES[name]
    except KeyError:
        known = ", ".join(BACKOFF_POLICIES)
        raise ConfigError("backoff", f"unknown policy {name!r} (known: {known})") from None
    if isinstance(factory, type) and attrs.has(factory):  # every built-in policy
        accepted = [field.alias for field in attrs.fields(factory) if field.init]
        for param in params:
            if param not in accepted:
                raise ConfigError(
                    param,
                    f"not a parameter of the {name!r} policy "
                    f"(its parameters: {', '.join(accepted)})",
                )
    try:
        return factory(**params)
    except TypeError as exc:  # a factory that is not an attrs class
        raise ConfigError("backoff", f"bad parameters for {name!r}: {exc}") from None
