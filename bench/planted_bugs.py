"""How many planted bugs ``check_implementation`` catches at its default settings, and how
long each check takes (issue 19's goal: every kind, each under 10 s).

Usage::

    python bench/planted_bugs.py [--runs R] [--json FILE]

The machine, its three implementations (a plain class, python-statemachine,
transitions) and the bugs planted in them are ``tests/planted.py``'s; the test
suite (``tests/test_harness_planted.py``) asserts every bug is caught, this
script only times it: for each implementation and bug, R runs (default 3),
reporting the median and the slowest wall time (``time.perf_counter``) and
whether every run caught it.  No assertion is made on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Final

_ROOT: Final = Path(__file__).resolve().parent.parent
for folder in (_ROOT, _ROOT / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from planted import BUGS, STYLES, check  # noqa: E402

from fsm_live.testing import Mismatch  # noqa: E402

GOAL_S: Final = 10.0


def measure(style: str, bug: str | None, runs: int) -> tuple[bool, list[float]]:
    caught, times = True, []
    for _ in range(runs):
        start = time.perf_counter()
        try:
            check(style, bug)
            found = False
        except Mismatch:
            found = True
        times.append(time.perf_counter() - start)
        caught = caught and (found if bug is not None else not found)
    return caught, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'implementation':<20} {'planted bug':<44} {'caught':<7} median  slowest")
    for style in STYLES:
        for bug in (None, *BUGS):
            ok, times = measure(style, bug, args.runs)
            label = bug or "(none: the correct one passes)"
            rows.append(
                {
                    "implementation": style,
                    "bug": bug,
                    "ok": ok,
                    "median_s": statistics.median(times),
                    "max_s": max(times),
                }
            )
            print(
                f"{style:<20} {label:<44} {'yes' if ok else 'NO':<7} "
                f"{statistics.median(times):6.2f}s {max(times):6.2f}s"
            )
    planted = [r for r in rows if r["bug"] is not None]
    caught = sum(1 for r in planted if r["ok"])
    slowest = max(r["max_s"] for r in planted)
    print(
        f"caught {caught} of {len(planted)} planted bugs; slowest check {slowest:.2f} s "
        f"(goal: every one, each under {GOAL_S:g} s)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
