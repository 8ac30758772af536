"""A fixed-bucket histogram of heartbeat round trips: pure, no prometheus-client."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

__all__ = ("RTT_BUCKETS", "RttHistogram")

#: Upper bounds (seconds) of the round-trip buckets: loopback to a congested link.
RTT_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class RttHistogram:
    """Counts of round trips per bucket (not cumulative), their sum and count.

    :meth:`observe` costs one bisection; nothing else happens per round trip.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = RTT_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bucket bounds must be increasing, got {bounds!r}")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Count one round trip of ``seconds``."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def add(self, other: RttHistogram) -> None:
        """Add ``other``'s counts (same bounds) to this one's."""
        if other.bounds != self.bounds:
            raise ValueError("histograms with different buckets")
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        self.sum += other.sum
        self.count += other.count

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus exposes them, ``+Inf`` last."""
        pairs, running = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            pairs.append((_le(bound), running))
        pairs.append(("+Inf", self.count))
        return pairs


def _le(bound: float) -> str:
    return repr(bound)
