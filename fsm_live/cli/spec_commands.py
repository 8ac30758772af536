"""``fsm-live check`` and ``fsm-live diagram``: validate specs and draw them."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from fsm_live.cli._output import EXIT_BAD_USAGE, PROG, Output, Subparsers, seconds
from fsm_live.cli._specs import read_spec
from fsm_live.diagram import (
    MERMAID_MAX_TEXT,
    GraphvizFailed,
    GraphvizMissing,
    TraceUnreadable,
    read_trace_counts,
    to_dot,
    to_mermaid,
    to_svg,
)
from fsm_live.errors import ConfigError, SpecError
from fsm_live.spec import Registry, Spec

__all__ = ("EXIT_BAD_USAGE", "EXIT_INVALID", "add_check", "add_diagram")

FORMATS = ("mermaid", "dot", "svg")
#: A spec that is not valid (check, diagram).
EXIT_INVALID = 1


def _load(path: str, command: str, out: Output) -> Spec | int:
    """Load and validate a spec, reporting every problem; the exit code if it is not
    usable: 2 when the file cannot be read (a usage error, one line, as in every
    command), 1 when it is not a valid spec (each problem as FILE:LINE: item: message)."""
    try:
        return read_spec(path)
    except ConfigError as exc:
        out.problem(f"{PROG} {command}: error: {exc}")
        return EXIT_BAD_USAGE
    except SpecError as exc:
        for problem in exc.problems:
            out.problem(problem)
        return EXIT_INVALID


# -- check -----------------------------------------------------------------------------------


def add_check(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate lifecycle spec files",
        description="Validate each spec file; report every problem as FILE:LINE: item: message.",
        epilog="Exit codes: 0 every spec is valid; 1 one is not; 2 bad arguments (a file "
        "that cannot be read, a bad --bind).",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="a spec file (YAML)")
    parser.add_argument(
        "--bind",
        metavar="MODULE:NAME",
        help="also check the bindings of a Registry (imports MODULE; "
        "without --bind no user code is imported)",
    )
    parser.set_defaults(handler=_run_check)


def _registry(target: str) -> Registry | str:
    """The :class:`Registry` ``module:name`` names, or a one-line reason why not."""
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name:
        return f"--bind {target}: expected MODULE:NAME, e.g. myapp.machines:registry"
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: MODULE may be beside the spec
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return f"--bind {target}: cannot import {module_name}: {type(exc).__name__}: {exc}"
    if not hasattr(module, name):
        return f"--bind {target}: module {module_name} has no name {name!r}"
    value = getattr(module, name)
    if not isinstance(value, Registry):
        what = "None" if value is None else f"a {type(value).__name__}"
        return f"--bind {target}: {module_name}.{name} is {what}, not a fsm_live.spec.Registry"
    return value


def _run_check(args: argparse.Namespace, out: Output) -> int:
    registry: Registry | None = None
    if args.bind is not None:
        found = _registry(args.bind)
        if isinstance(found, str):
            out.problem(f"{PROG} check: error: {found}")
            return EXIT_BAD_USAGE
        registry = found
    status = 0
    for path in args.specs:
        spec = _load(path, "check", out)
        if isinstance(spec, int):
            status = max(status, spec)
            continue
        # Without --bind, only names the spec declares and never uses (no code imported).
        problems = Registry("none").unused(spec) if registry is None else registry.check(spec)
        for problem in problems:
            out.problem(problem)
        if problems:
            status = max(status, EXIT_INVALID)
            continue
        bound = f", bound by {args.bind}" if registry is not None else ""
        out.ok(
            f"{path}: ok ({len(spec.states)} states, {len(spec.transitions)} transitions{bound})"
        )
    return status


# -- diagram ---------------------------------------------------------------------------------


def add_diagram(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "diagram",
        help="draw a spec as Mermaid, Graphviz DOT or SVG",
        description="Draw a spec's state diagram.  SVG needs Graphviz's `dot` program.",
        epilog="Exit codes: 0 drawn; 1 the spec is not valid, or Graphviz is missing or "
        "failed; 2 bad arguments (a spec or --trace file that cannot be read, an -o file "
        "that cannot be written).",
    )
    parser.add_argument("spec", metavar="SPEC", help="a spec file (YAML)")
    parser.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        default="mermaid",
        help="output format (default: %(default)s)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    parser.add_argument(
        "--no-notes",
        dest="notes",
        action="store_false",
        help="leave out each state's tasks, timers and ignored events",
    )
    parser.add_argument(
        "--trace",
        nargs="+",
        metavar="FILE",
        default=None,
        help="JSONL trace file(s): label each edge with the times it was "
        "taken (hot edges heavier in DOT and SVG); rows that are no edge of the "
        "spec are warned about",
    )
    parser.add_argument(
        "--current",
        metavar="STATE",
        default=None,
        help="highlight STATE (e.g. where a machine is now)",
    )
    parser.add_argument(
        "--graphviz-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="give Graphviz at most S seconds for --format svg (default: %(default)g)",
    )
    parser.set_defaults(handler=_run_diagram)


def _run_diagram(args: argparse.Namespace, out: Output) -> int:
    spec = _load(args.spec, "diagram", out)
    if isinstance(spec, int):
        return spec
    if args.current is not None and args.current not in spec.states:
        out.problem(
            f"{PROG} diagram: error: --current {args.current}: no such state in {args.spec} "
            f"(states: {', '.join(spec.states)})"
        )
        return EXIT_BAD_USAGE
    counts = None
    if args.trace is not None:
        try:
            read = read_trace_counts(spec, args.trace)
        except TraceUnreadable as exc:  # a --trace that cannot be read or is not a trace
            out.problem(f"{PROG} diagram: error: --trace {exc}")
            return EXIT_BAD_USAGE
        counts = read.counts
        for stray in read.strays:
            out.problem(f"{PROG} diagram: warning: {stray}")
    try:
        if args.format == "svg":
            text = to_svg(
                spec,
                notes=args.notes,
                counts=counts,
                current=args.current,
                timeout=args.graphviz_timeout,
            )
        elif args.format == "dot":
            text = to_dot(spec, notes=args.notes, counts=counts, current=args.current)
        else:
            text = to_mermaid(spec, notes=args.notes, counts=counts, current=args.current)
    except (GraphvizMissing, GraphvizFailed) as exc:
        out.problem(f"{PROG} diagram: {exc}")
        return 1
    if args.format == "mermaid" and len(text) > MERMAID_MAX_TEXT:
        out.problem(
            f"{PROG} diagram: warning: the Mermaid text is {len(text):,} characters, "
            f"over Mermaid's default maxTextSize ({MERMAID_MAX_TEXT:,}): renderers "
            f"show 'Maximum text size in diagram exceeded' unless configured; "
            f"try --no-notes or --format svg"
        )
    if args.output is None:
        out.text(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        out.problem(f"{PROG} diagram: error: -o {args.output}: {exc.strerror or exc}")
        return EXIT_BAD_USAGE
    return 0
