"""``fsm-live check`` and ``fsm-live diagram``: validate specs and draw them."""

from __future__ import annotations

import argparse
from pathlib import Path

from fsm_live.cli._output import PROG, Output, Subparsers
from fsm_live.diagram import GraphvizFailed, GraphvizMissing, to_dot, to_mermaid, to_svg
from fsm_live.errors import SpecError
from fsm_live.spec import Spec

__all__ = ("add_check", "add_diagram")

FORMATS = ("mermaid", "dot", "svg")


def _load(path: str, out: Output) -> Spec | None:
    """Load and validate a spec, reporting every problem; None if it is not usable."""
    try:
        return Spec.from_path(path)
    except SpecError as exc:
        for problem in exc.problems:
            out.problem(problem)
    except FileNotFoundError:
        out.problem(f"{path}: no such file")
    except UnicodeDecodeError as exc:
        out.problem(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        out.problem(f"{path}: cannot read: {exc.strerror or exc}")
    return None


# -- check -----------------------------------------------------------------------------------


def add_check(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="validate lifecycle spec files",
        description="Validate each spec file; report every problem as FILE:LINE: item: message.",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="a spec file (YAML)")
    parser.set_defaults(handler=_run_check)


def _run_check(args: argparse.Namespace, out: Output) -> int:
    status = 0
    for path in args.specs:
        spec = _load(path, out)
        if spec is None:
            status = 1
            continue
        out.ok(f"{path}: ok ({len(spec.states)} states, {len(spec.transitions)} transitions)")
    return status


# -- diagram ---------------------------------------------------------------------------------


def add_diagram(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "diagram", help="draw a spec as Mermaid, Graphviz DOT or SVG",
        description="Draw a spec's state diagram.  SVG needs Graphviz's `dot` program.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a spec file (YAML)")
    parser.add_argument("-f", "--format", choices=FORMATS, default="mermaid",
                        help="output format (default: %(default)s)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE instead of standard output")
    parser.add_argument("--no-notes", dest="notes", action="store_false",
                        help="leave out each state's tasks and timers")
    parser.set_defaults(handler=_run_diagram)


def _run_diagram(args: argparse.Namespace, out: Output) -> int:
    spec = _load(args.spec, out)
    if spec is None:
        return 1
    try:
        if args.format == "svg":
            text = to_svg(spec, notes=args.notes)
        elif args.format == "dot":
            text = to_dot(spec, notes=args.notes)
        else:
            text = to_mermaid(spec, notes=args.notes)
    except (GraphvizMissing, GraphvizFailed) as exc:
        out.problem(f"{PROG} diagram: {exc}")
        return 1
    if args.output is None:
        out.text(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        out.problem(f"{args.output}: cannot write: {exc.strerror or exc}")
        return 1
    return 0
