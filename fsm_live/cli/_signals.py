"""Ctrl-C and SIGTERM for the long-running commands, received as data for the whole run.

A command runs its body with :func:`run_until_stopped`, which keeps a receiver
for SIGINT and SIGTERM open from before the body starts until after it ended,
its close included.  So a signal never raises ``KeyboardInterrupt`` at a random
await point (which, inside a task group, ends in a traceback or a RuntimeError
about cancel scopes):

* the first signal sets :class:`Stop` (and cancels its :meth:`Stop.cancelling`
  scopes); the body closes cleanly and returns;
* after a SIGINT (Ctrl-C) the command prints ``fsm-live COMMAND: interrupted`` on
  stderr and exits 130; after SIGTERM it exits with the body's code (0 once it
  closed cleanly): SIGTERM is the graceful "stop", as service managers send it;
* a second signal of either kind while that close is in progress cuts it short:
  the same one line, exit 130, at once.  "At once" means the process exits
  without waiting for the close: a connection's close is shielded from
  cancellation and may take its ``close_timeout`` against a peer that does not
  answer, which is exactly when a user presses Ctrl-C again.

Once a signal ended the run, SIGINT is ignored: the process only has to exit.
A Ctrl-C outside the receiver (while a command starts or ends, or in a short
command such as ``check``) is caught in :func:`fsm_live.cli.main`, with the
same line and code.  One during Python's own start-up, while it imports the
package (a few tenths of a second, before ``main`` runs), still ends in
Python's ``KeyboardInterrupt`` traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Final, NoReturn

import anyio
from rich.console import Console

from fsm_live.cli._output import PROG, Output

__all__ = (
    "EXIT_INTERRUPTED",
    "Stop",
    "ignore_further_interrupts",
    "interrupted",
    "run_until_stopped",
)

#: The shell's code for "ended by SIGINT" (128 + 2).
EXIT_INTERRUPTED: Final = 130


class Stop:
    """The first SIGINT or SIGTERM a command received, for its body to wait on."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._event = anyio.Event()
        self._scopes: list[anyio.CancelScope] = []

    @property
    def requested(self) -> bool:
        """Whether a signal arrived."""
        return self.signal is not None

    @property
    def interrupted(self) -> bool:
        """Whether the signal was SIGINT (the command then exits 130)."""
        return self.signal == signal.SIGINT

    async def wait(self) -> None:
        """Return once a signal arrived."""
        await self._event.wait()

    @contextlib.contextmanager
    def cancelling(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope that a signal cancels (at once if one arrived already), for
        work that stops by being cancelled and closes what it opened on the way out."""
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            try:
                if self.requested:
                    scope.cancel()
                yield scope
            finally:
                self._scopes.remove(scope)

    def _set(self, signum: signal.Signals) -> None:
        self.signal = signum
        self._event.set()
        for scope in self._scopes:
            scope.cancel()


def interrupted(command: str, out: Output) -> int:
    """Say that ``command`` (``""`` before one was parsed) was interrupted, in one line
    on stderr; return 130."""
    out.problem(f"{PROG} {command}: interrupted" if command else f"{PROG}: interrupted")
    return EXIT_INTERRUPTED


async def run_until_stopped(
    command: str, out: Output, body: Callable[[Stop], Awaitable[int]]
) -> int:
    """Run ``body(stop)`` with SIGINT and SIGTERM received as data until it returned.

    ``body`` must return (its exit code) soon after ``stop`` is set, having
    closed what it opened.  Returns 130 after a SIGINT, else ``body``'s code;
    does not return on a second signal (see the module docstring).  Once a
    signal ended the run, SIGINT stays ignored: the process is on its way out.
    Must run in the main thread.  An exception of ``body`` propagates as
    itself, not wrapped in an exception group.
    """
    stop = Stop()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        with _unwrapped():
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_receive, received, stop, command, out)
                code = await body(stop)
                task_group.cancel_scope.cancel()
        if stop.interrupted:  # said while still receiving: a Ctrl-C now adds no line
            code = interrupted(command, out)
    if stop.requested:
        ignore_further_interrupts()
    return code


def ignore_further_interrupts() -> None:
    """Ignore SIGINT from now on: the command was stopped and the process only has to
    exit.  A Ctrl-C during Python's own shutdown (tens of milliseconds) would end it
    as "killed by SIGINT", not with the exit code the command chose."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def _receive(received: AsyncIterator[int], stop: Stop, command: str, out: Output) -> None:
    async for signum in received:
        if not stop.requested:
            stop._set(signal.Signals(signum))
        else:
            _exit_now(command, out)


def _exit_now(command: str, out: Output) -> NoReturn:
    """End the process with 130 now, without waiting for any close in progress."""
    Console(file=out.stdout).show_cursor(True)  # a live display hides it (on terminals only)
    interrupted(command, out)
    for stream in (out.stdout, out.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    # os._exit, not SystemExit: an exception would wait for the shielded close to end.
    # Trace files are line-buffered, so every transition written so far is on disk.
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _unwrapped() -> Iterator[None]:
    """Re-raise the one exception a task group wrapped as itself, so that callers can
    catch the body's exceptions by type (``except OSError``)."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        raise group.exceptions[0] from None
