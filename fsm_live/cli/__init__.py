"""The ``fsm-live`` command line (also ``python -m fsm_live``).

Each subcommand lives in a module of this package with an ``add(subparsers)``
function (``add_<name>`` where a module has several) that declares its arguments
and sets ``handler`` to a ``run(args, out) -> int`` function; :func:`build_parser`
registers every function listed in ``_SUBCOMMANDS``.  To add a subcommand, write
its module and append its ``add`` to that tuple.

Exit codes: 0 success; 1 the command failed (invalid spec, unreadable file,
Graphviz missing, ...), with the reason on stderr; 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from fsm_live.cli import connect, demo, fleet, serve, spec_commands
from fsm_live.cli._output import PROG, Handler, Output, Subparsers

__all__ = ("build_parser", "main")


def _package_version() -> str:
    try:
        return version("fsm_live")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        from fsm_live import __version__

        return __version__


# -- parser and entry point ------------------------------------------------------------------

#: Every subcommand's ``_add_*`` function, in the order ``--help`` lists them.
_SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    spec_commands.add_check,
    spec_commands.add_diagram,
    connect.add,
    fleet.add,
    serve.add,
    demo.add,
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
