"""The ``fsm-live`` command line (also ``python -m fsm_live``).

Each subcommand lives in a module of this package with an ``add(subparsers)``
function (``add_<name>`` where a module has several) that declares its arguments
and sets ``handler`` to a ``run(args, out) -> int`` function; :func:`build_parser`
registers every one listed in ``_SUBCOMMANDS``.  To add a subcommand, write its
module and add a row to that table.  A command's module is imported only when the
parser needs it: ``fsm-live check`` does not load the runtime, ``--help`` loads all.

Exit codes: 0 success; 1 the command failed (invalid spec, unreadable file,
Graphviz missing, ...), with the reason on stderr; 2 bad usage (argparse, or a
bad value the command found); 130 interrupted by Ctrl-C (SIGINT), with the one
line ``fsm-live COMMAND: interrupted`` on stderr (see :mod:`fsm_live.cli._signals`).
Commands add their own codes (``connect``: 3 when FAILED).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from fsm_live.cli._output import PROG, Handler, Output
from fsm_live.cli._signals import ignore_further_interrupts, interrupted

__all__ = ("build_parser", "main")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # for --version only

    try:
        return version("fsm_live")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        from fsm_live import __version__

        return __version__


# -- parser and entry point ------------------------------------------------------------------

#: Every subcommand: its name, its module and the function that adds it, in the
#: order ``--help`` lists them.
_SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("check", "spec_commands", "add_check"),
    ("diagram", "spec_commands", "add_diagram"),
    ("verify", "verify", "add"),
    ("report", "report", "add"),
    ("connect", "connect", "add"),
    ("fleet", "fleet", "add"),
    ("serve", "serve", "add"),
    ("demo", "demo", "add"),
)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``fsm-live connect: error:
    argument --duration: expected a positive number of seconds, got '-1' (fsm-live
    connect --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``fsm-live`` argument parser with every subcommand registered, or only the
    one named ``only`` (the others' modules are then not imported)."""
    parser = _Parser(
        prog=PROG,
        description="Live WebSocket connections as an explicit, checkable state machine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for name, module, function in _SUBCOMMANDS:
        if only is None or name == only:
            add = getattr(importlib.import_module(f"fsm_live.cli.{module}"), function)
            add(subparsers)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` starts with, if it is one (options before it, such as
    ``--version``, or an unknown word need the whole parser)."""
    known = {name for name, _, _ in _SUBCOMMANDS}
    return argv[0] if argv and argv[0] in known else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fsm-live`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Bad usage makes argparse print a message and raise ``SystemExit(2)``;
    ``--help`` and ``--version`` raise ``SystemExit(0)``.  Everything else
    returns: 0 on success, 1 when the command failed (reason on stderr), 130
    after Ctrl-C (SIGINT is then ignored for the rest of the process, which only
    has to exit), and the command's own codes.
    """
    out = Output(sys.stdout, sys.stderr)
    command = ""  # until the arguments are parsed
    try:
        arguments = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(_command_named(arguments))
        args, unknown = parser.parse_known_args(arguments)
        if unknown:  # named by the command's parser, not the top one
            parser.exit(
                2,
                f"{PROG} {args.command}: error: unrecognized arguments: {' '.join(unknown)} "
                f"({PROG} {args.command} --help)\n",
            )
        command = args.command
        handler: Handler = args.handler
        return handler(args, out)
    except KeyboardInterrupt:
        # The last resort: long-running commands receive SIGINT as data while they
        # run (fsm_live.cli._signals); this catches a Ctrl-C outside that (starting,
        # ending, or in a short command such as check).
        pass
    except BaseExceptionGroup as group:
        # A KeyboardInterrupt that went through a task group arrives wrapped.
        if group.split(KeyboardInterrupt)[1] is not None:
            raise
    # Only a Ctrl-C gets here.
    ignore_further_interrupts()
    return interrupted(command, out)


if __name__ == "__main__":
    raise SystemExit(main())
