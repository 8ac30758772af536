"""The ``fsm-live`` command line (also ``python -m fsm_live``).

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its
arguments and sets ``handler`` to a ``_run_<name>(args, out) -> int`` function;
:func:`build_parser` registers every function listed in ``_SUBCOMMANDS``.  To
add a subcommand, write both functions and append the first to that tuple.

Exit codes: 0 success; 1 the command failed (invalid spec, unreadable file,
Graphviz missing, ...), with the reason on stderr; 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TextIO, TypeAlias

from rich.console import Console
from rich.text import Text

from fsm_live.diagram import GraphvizFailed, GraphvizMissing, to_dot, to_mermaid, to_svg
from fsm_live.errors import SpecError
from fsm_live.spec import Spec

__all__ = ("build_parser", "main")

PROG = "fsm-live"
FORMATS = ("mermaid", "dot", "svg")


class Output:
    """Where a subcommand writes: results to ``stdout``, problems to ``stderr``.

    On a terminal, problems and "ok" lines are coloured with rich; otherwise
    (pipes, files, tests) lines are written as plain text, never wrapped.
    """

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr

    def _write(self, stream: TextIO, line: str, style: str) -> None:
        if stream.isatty():
            console = Console(file=stream, highlight=False, soft_wrap=True)
            console.print(Text(line, style=style))
        else:
            stream.write(line + "\n")

    def ok(self, line: str) -> None:
        """A success line on stdout."""
        self._write(self.stdout, line, "green")

    def problem(self, line: str) -> None:
        """A problem on stderr."""
        self._write(self.stderr, line, "red")

    def text(self, text: str) -> None:
        """Raw text on stdout (a diagram), written exactly as given."""
        self.stdout.write(text)


Handler: TypeAlias = Callable[[argparse.Namespace, Output], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _package_version() -> str:
    try:
        return version("fsm_live")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        from fsm_live import __version__

        return __version__


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


def _add_check(subparsers: Subparsers) -> None:
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


def _add_diagram(subparsers: Subparsers) -> None:
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


# -- parser and entry point ------------------------------------------------------------------

#: Every subcommand's ``_add_*`` function, in the order ``--help`` lists them.
_SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_check,
    _add_diagram,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``fsm-live`` argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Live WebSocket connections as an explicit, checkable state machine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fsm-live`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Bad usage makes argparse print a message and raise ``SystemExit(2)``;
    ``--help`` and ``--version`` raise ``SystemExit(0)``.  Everything else
    returns: 0 on success, 1 when the command failed (reason on stderr).
    """
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args, Output(sys.stdout, sys.stderr))


if __name__ == "__main__":
    raise SystemExit(main())
