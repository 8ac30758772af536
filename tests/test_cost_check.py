"""bench/cost_check.py, the guard .ci/run runs: it can fail, and it says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "cost_check.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_cost_check_fails_above_its_bound_and_says_the_ratio() -> None:
    """A bound no client meets (0.01x) fails the check, exit 1, with the figures."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "30", "--bound", "0.01"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    line = done.stdout.strip()
    assert line.startswith("cost check: 30 idle connections through fsm_live.connect(): ")
    assert "ABOVE THE BOUND 0.01x" in line


def test_a_bad_argument_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "zero"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--n" in done.stderr
