"""Benchmark of ``fsm-live check`` on a large generated spec (target: <= 0.5 s at 5,000 rows).

Usage::

    python bench/spec_check.py [--transitions N] [--runs R] [--quick] [--json FILE]

It writes a spec of N transitions (default 5,000) over N/5 states to a temporary
file: each state has five rows (``next`` to the following state, ``skip`` two
ahead, ``back`` to the previous one, a guarded pair of ``jump`` rows, and every
state may ``finish`` into the final state), so every check has work to do
(reachability both ways, shadowing, reserved names, duplicate keys).  It then
times, over R runs after one warm-up run, and reports the median and the
slowest:

* ``check (in process)``: ``fsm_live.cli.main(["check", SPEC])``, which reads,
  parses (libyaml when PyYAML has it) and validates the file; also as CPU time
  (``time.process_time``), which a busy machine disturbs less than wall time;
* ``fsm-live check (new process)``: the same as a command, interpreter start-up
  and imports included (what a user waits for).

Timings use ``time.perf_counter``; no assertion is made (see the printed target).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

# Runnable as ``python bench/spec_check.py`` from a checkout without installing the package.
_ROOT: Final = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from fsm_live.cli import main as cli_main  # noqa: E402
from fsm_live.spec.loader import LIBYAML  # noqa: E402

TARGET_S: Final = 0.5


def generate(transitions: int) -> str:
    """A valid spec with ``transitions`` rows (rounded down to a multiple of 5)."""
    n = max(2, transitions // 5)
    lines = ["name: generated", "initial: S0", "states:"]
    lines += [f"  S{i}: {{description: state {i}}}" for i in range(n)]
    lines += ["  END: {final: true}", "transitions:"]
    for i in range(n):
        lines += [
            f"  - {{trigger: next, source: S{i}, dest: S{(i + 1) % n}}}",
            f"  - {{trigger: skip, source: S{i}, dest: S{(i + 2) % n}}}",
            f"  - {{trigger: back, source: S{i}, dest: S{(i - 1) % n}}}",
            f"  - {{trigger: jump, source: S{i}, dest: S{(i * 7) % n}, conditions: [exhausted]}}",
            f"  - {{trigger: jump, source: S{i}, dest: END, unless: [exhausted]}}",
        ]
    lines.append("  - {trigger: finish, source: '*', dest: END}")
    return "\n".join(lines) + "\n"


def _check(path: Path, clock: Callable[[], float]) -> float:
    sink = io.StringIO()
    start = clock()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = cli_main(["check", str(path)])
    elapsed = clock() - start
    if code != 0:
        raise SystemExit(f"check failed on the generated spec:\n{sink.getvalue()}")
    return elapsed


def time_in_process(path: Path) -> float:
    return _check(path, time.perf_counter)


def cpu_in_process(path: Path) -> float:
    return _check(path, time.process_time)


def time_new_process(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fsm_live", "check", str(path)], check=True, capture_output=True
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 runs")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.yaml"
        path.write_text(generate(args.transitions), encoding="utf-8")
        rows = {}
        for label, timer in (
            ("check (in process)", time_in_process),
            ("check (in process, CPU time)", cpu_in_process),
            ("fsm-live check (new process)", time_new_process),
        ):
            timer(path)  # warm-up
            times = [timer(path) for _ in range(runs)]
            rows[label] = {"median_s": statistics.median(times), "max_s": max(times)}
    transitions = args.transitions // 5 * 5 + 1
    print(
        f"fsm-live check of a {transitions}-transition spec "
        f"(libyaml: {'yes' if LIBYAML else 'no'}; {runs} runs; target <= {TARGET_S} s)"
    )
    for label, figures in rows.items():
        verdict = "met" if figures["median_s"] <= TARGET_S else "MISSED"
        print(
            f"  {label:<30} median {figures['median_s']:.3f} s   "
            f"max {figures['max_s']:.3f} s   {verdict}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"transitions": transitions, "libyaml": LIBYAML, "runs": runs, "rows": rows},
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
