"""fsm_live/diagnostics/units.py: durations and shares as every view of a report says
them (the terminal report, the HTML page, the fleet's dashboard)."""

from __future__ import annotations

import pytest

from fsm_live.diagnostics.units import duration, share

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0004, "0.4 ms"),
        (0.0125, "12.5 ms"),
        (3.2, "3.20 s"),
        (119.994, "119.99 s"),
        (120.0, "2.0 min"),
        (270.0, "4.5 min"),
        (7199.0, "120.0 min"),
        (7200.0, "2.0 h"),
        (60139.0, "16.7 h"),  # the "60139.0 s observed"
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("fraction", "text"), [(None, "-"), (0.992, "99.2 %"), (1.0, "100.0 %")])
def test_share(fraction: float | None, text: str) -> None:
    assert share(fraction) == text
