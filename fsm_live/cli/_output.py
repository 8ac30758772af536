"""What every subcommand shares: where it writes, and the types that register it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeAlias

from rich.console import Console
from rich.text import Text

from fsm_live.errors import ConfigError

__all__ = (
    "EXIT_BAD_USAGE",
    "PROG",
    "Handler",
    "Output",
    "Subparsers",
    "check_writable",
    "parse_number",
    "positive_number",
    "seconds",
)

PROG = "fsm-live"
#: Bad arguments, in every command: one line on stderr naming what was typed.
EXIT_BAD_USAGE = 2


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


def parse_number(text: str, *, unit: str = "number", at_least: float | None = None) -> float:
    """A finite number from a command-line argument, for argparse ``type=`` functions.

    Positive, or ``>= at_least`` when given; ``unit`` names it in the
    ``ArgumentTypeError`` (``expected a positive number of seconds, got '-1'``).
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {unit}, got {text!r}") from None
    if at_least is None:
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"expected a positive {unit}, got {text!r}")
    elif not at_least <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a {unit} >= {at_least:g}, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """An argparse ``type``: a positive finite number."""
    return parse_number(text)


def seconds(text: str) -> float:
    """An argparse ``type``: a positive finite number of seconds."""
    return parse_number(text, unit="number of seconds")


def host(text: str) -> str:
    """An argparse ``type``: an address to listen on, an IP address or a host name that
    can be looked up (:func:`~fsm_live.transport.url.is_host_name`), not empty, no
    blanks."""
    # Imported here: the transport package is not light, and most commands never ask.
    from fsm_live.transport.url import is_host_name

    if not text or any(c.isspace() for c in text) or not is_host_name(text):
        raise argparse.ArgumentTypeError(f"expected an IP address or a host name, got {text!r}")
    return text


def check_writable(path: str | Path, flag: str) -> None:
    """Raise ConfigError (``--trace PATH: No such file or directory``) unless ``path``
    can be opened for appending.

    It is opened and closed once, so it exists afterwards (empty if new), as the
    trace writer leaves it anyway.  A command checks its output files before it
    starts anything, so that a bad path is one line and exit 2, not an error
    raised from inside a running connection.
    """
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}", exc.strerror or type(exc).__name__) from None
