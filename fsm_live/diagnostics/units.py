"""Figures in the units a person reads: durations and shares, for every view of a report.

One place, so that the terminal report, the HTML page and the fleet's dashboard
say "16.7 h" for the same 60139 s.
"""

from __future__ import annotations

__all__ = ("duration", "share")


def duration(seconds: float | None) -> str:
    """``0.4 ms``, ``12.5 ms``, ``3.20 s``, ``4.5 min``, ``2.1 h``; ``-`` for None.

    Below 1 s in milliseconds, below 2 min in seconds, below 2 h in minutes,
    then in hours: each unit while its number stays under about 120.
    """
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def share(fraction: float | None) -> str:
    """A fraction (0-1) as a percentage, ``99.2 %``; ``-`` for None."""
    return "-" if fraction is None else f"{fraction * 100:.1f} %"
