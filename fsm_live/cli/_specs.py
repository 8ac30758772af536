"""A spec file named on the command line, read the same way by every command.

A file that cannot be read is a usage error (exit :data:`EXIT_BAD_USAGE`, one
line naming the path as typed) in every command; what a command does with a
spec that is not valid is its own: ``check`` and ``diagram`` list every problem
and exit 1, ``report`` and ``verify`` take it as a bad argument
(:func:`load_spec`).  Light on purpose: ``fsm-live check`` imports this and the
spec package only.
"""

from __future__ import annotations

from fsm_live.errors import ConfigError, SpecError
from fsm_live.spec import Spec

__all__ = ("load_spec", "read_spec")


def read_spec(path: str) -> Spec:
    """The spec at ``path``.  Raises ConfigError naming the path when the file cannot
    be read (no such file, a directory, no permission): a usage error, exit 2 in every
    command; :class:`SpecError` (every problem) when it is not a valid spec."""
    try:
        return Spec.from_path(path)
    except FileNotFoundError:
        raise ConfigError(path, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, "a directory, not a spec file") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None


def load_spec(path: str) -> Spec:
    """The spec at ``path``; ConfigError naming it when it cannot be read or is invalid
    (with the first problem, and the command that lists them all)."""
    try:
        return read_spec(path)
    except SpecError as exc:
        more = (
            f" (and {len(exc.problems) - 1} more: fsm-live check {path})"
            if len(exc.problems) > 1
            else ""
        )
        # A problem reads "FILE:LINE: item: message": the file is named already.
        problem = exc.problems[0].removeprefix(f"{path}:")
        line, colon, rest = problem.partition(":")
        if colon and line.isdigit():
            problem = f"line {line}:{rest}"
        raise ConfigError(path, f"not a valid spec: {problem.strip()}{more}") from None
