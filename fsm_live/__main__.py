"""``python -m fsm_live`` and the ``fsm-live`` script: the command line (:mod:`fsm_live.cli`).

:func:`run` imports the command line inside its own guard, so that a Ctrl-C while
Python is still loading it (the first few tenths of a second) ends as any other
Ctrl-C does: one line on stderr, exit 130, no traceback.
"""

from __future__ import annotations

import sys

__all__ = ("run",)


def run() -> int:
    """Run ``fsm-live`` with ``sys.argv[1:]``; return its exit code."""
    try:
        from fsm_live.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("fsm-live: interrupted\n")
        return 130
    return main()


if __name__ == "__main__":
    raise SystemExit(run())
