"""Summarise the fault matrix's figures from JUnit XML reports into a Markdown table.

Each test of ``tests/test_fault_matrix.py`` records its figures as user properties;
run the module a few times with ``--junitxml`` and give the files here, in two groups
(say, a quiet machine and a busy one)::

    pytest tests/test_fault_matrix.py -n 0 -o junit_family=legacy --junitxml=quiet1.xml
    python docs/fault_matrix_figures.py --quiet quiet*.xml --busy busy*.xml

For each test case and figure: the range over the runs of each group (one value
when they all agree); a list figure (say, gaps) is given by its first run.
"""

from __future__ import annotations

import argparse
import ast
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

Figures = dict[tuple[str, str], list[object]]


def read(paths: list[Path]) -> Figures:
    """(test case, figure) -> the values of the runs, in the files' order."""
    figures: Figures = defaultdict(list)
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            for prop in case.iter("property"):
                try:
                    value: object = ast.literal_eval(prop.get("value", ""))
                except (ValueError, SyntaxError):
                    value = prop.get("value", "")
                figures[(case.get("name", "?"), prop.get("name", "?"))].append(value)
    return figures


def span(values: list[object]) -> str:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not values:
        return ""
    if len(numbers) != len(values):
        return str(values[0])
    low, high = min(numbers), max(numbers)
    shown = [f"{n:.4g}" for n in (low, high)]
    return shown[0] if shown[0] == shown[1] else f"{shown[0]} - {shown[1]}"


def table(quiet: Figures, busy: Figures, runs: tuple[int, int]) -> str:
    """A column per group that has runs (a group given no report is left out)."""
    groups = [
        (f"{label} ({count} runs)", figures)
        for label, count, figures in (("quiet", runs[0], quiet), ("busy", runs[1], busy))
        if count
    ]
    lines = [
        "| test | figure | " + " | ".join(label for label, _ in groups) + " |",
        "| --- | --- | " + " | ".join("---" for _ in groups) + " |",
    ]
    for case, name in sorted(quiet.keys() | busy.keys()):
        cells = " | ".join(span(figures.get((case, name), [])) for _, figures in groups)
        lines.append(f"| `{case}` | {name} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--quiet", nargs="*", type=Path, default=[], metavar="XML")
    parser.add_argument("--busy", nargs="*", type=Path, default=[], metavar="XML")
    args = parser.parse_args(argv)
    missing = [str(p) for p in (*args.quiet, *args.busy) if not p.is_file()]
    if missing or not (args.quiet or args.busy):
        parser.error(
            f"no such report: {', '.join(missing)}"
            if missing
            else "give --quiet and/or --busy reports"
        )
    try:
        quiet, busy = read(args.quiet), read(args.busy)
    except ET.ParseError as exc:
        print(f"fault_matrix_figures: not a JUnit XML report: {exc}", file=sys.stderr)
        return 2
    print(table(quiet, busy, (len(args.quiet), len(args.busy))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
