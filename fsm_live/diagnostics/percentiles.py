"""Percentiles of a sample, and a histogram's nice bin width: pure arithmetic."""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

__all__ = ("Percentiles", "nice_step", "percentile")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly between the
    closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@attrs.frozen
class Percentiles:
    """How many values, and their 50th, 95th and 99th percentiles (None if none)."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        return cls(
            len(values), percentile(values, 50), percentile(values, 95), percentile(values, 99)
        )


def nice_step(span: float, bins: int) -> float:
    """A bin width of 1, 2 or 5 times a power of ten that cuts ``span`` into at most
    about ``bins`` bins (at least 0.001)."""
    if not span > 0 or bins < 1:
        return 1.0
    raw = span / bins
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return max(0.001, float(factor * power))
    return max(0.001, 10.0 * power)  # pragma: no cover - the loop always returns
