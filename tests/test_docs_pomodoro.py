"""docs/specs.md's worked example: its tests (docs/examples/test_pomodoro.py) run here."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
sys.path.insert(0, str(EXAMPLES))

from test_pomodoro import (  # noqa: E402
    TestPomodoro,
    test_a_pause_abandons_the_session,
    test_a_round_is_four_sessions_and_three_short_breaks_then_a_long_one,
)

__all__ = (
    "TestPomodoro",
    "test_a_pause_abandons_the_session",
    "test_a_round_is_four_sessions_and_three_short_breaks_then_a_long_one",
)
