"""``fsm-live verify SPEC TRACE...``: does each trace conform to the spec?

For each trace file, one line: ``T.jsonl: ok (N transitions, R runs)``, or
``T.jsonl:LINE: the first violation`` (the rules: :mod:`fsm_live.diagnostics.verify`).

Exit codes: 0 when every trace conforms; 1 when one does not; 2 for bad
arguments (a spec that cannot be read or is invalid, a trace that does not
exist or cannot be read), with one line naming the file as typed.
"""

from __future__ import annotations

import argparse

from fsm_live.cli._output import EXIT_BAD_USAGE, PROG, Output, Subparsers
from fsm_live.cli._specs import load_spec
from fsm_live.diagnostics.files import trace_paths
from fsm_live.diagnostics.verify import verify_file
from fsm_live.errors import ConfigError

__all__ = ("EXIT_BAD_USAGE", "EXIT_VIOLATION", "add", "run")

EXIT_VIOLATION = 1


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check that traces conform to a spec",
        description="Check that each trace follows the spec: the first transition leaves "
        "the initial state, each one starts where the previous one ended and "
        "is an edge of the spec, times never go back, a final state is never "
        "left.",
        epilog="Exit codes: 0 every trace conforms; 1 one does not (FILE:LINE: the first "
        "violation); 2 bad arguments.",
    )
    parser.add_argument("spec", metavar="SPEC", help="the spec file (YAML) the traces ran")
    parser.add_argument(
        "traces",
        nargs="+",
        metavar="TRACE",
        help="a trace file (JSON lines), or a directory of *.jsonl traces",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: Output) -> int:
    try:
        spec = load_spec(args.spec)
        paths = trace_paths(args.traces)
    except ConfigError as exc:
        out.problem(f"{PROG} verify: error: {exc}")
        return EXIT_BAD_USAGE
    status = 0
    for path in paths:
        try:
            verdict = verify_file(spec, path)
        except UnicodeDecodeError as exc:
            out.problem(f"{PROG} verify: error: {path}: not UTF-8 text (byte {exc.start})")
            return EXIT_BAD_USAGE
        except OSError as exc:
            out.problem(f"{PROG} verify: error: {path}: cannot read: {exc.strerror or exc}")
            return EXIT_BAD_USAGE
        if verdict.violation is None:
            out.ok(
                f"{path}: ok ({verdict.transitions} transitions, {verdict.runs} "
                f"run{'' if verdict.runs == 1 else 's'})"
            )
        else:
            out.problem(f"{path}:{verdict.violation.line}: {verdict.violation.message}")
            status = EXIT_VIOLATION
    return status
