"""``fsm-live demo``: the lifecycle, end to end, in one command (see :mod:`fsm_live.demo`).

On a terminal: a live panel (state, counters, heartbeat RTT, the latest
transitions and faults), then the summary as tables.  Otherwise: one plain line
per transition and per story event, then the summary as plain lines.  Both end
with the spec's Mermaid diagram, each edge annotated with how often it was taken.

Exit codes: 0 when the story ran to its end and the summary agrees with the
trace, or SIGTERM stopped it (the client, proxy and server close cleanly; no
summary); 1 when a step got stuck or the counts disagree; 2 for bad arguments
(``--trace`` a path that cannot be written included); 130 after Ctrl-C (SIGINT):
everything closes first, and a second Ctrl-C or SIGTERM cuts that short.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Final

import anyio
from rich.console import Console
from rich.live import Live

from fsm_live.cli._output import (
    EXIT_BAD_USAGE,
    PROG,
    Output,
    Subparsers,
    check_writable,
    parse_number,
)
from fsm_live.cli._signals import Stop, run_until_stopped
from fsm_live.cli.connect import configure_logging
from fsm_live.cli.views.connection import plain_transition
from fsm_live.cli.views.demo import demo_panel, plain_event, summary_lines, summary_tables
from fsm_live.cli.views.live import logs_above
from fsm_live.cli.views.styles import StateStyles
from fsm_live.connection import LiveConnection, default_machine
from fsm_live.core.effects import TransitionRecord
from fsm_live.demo import (
    DEFAULT_DURATION,
    MIN_DURATION,
    DemoEvent,
    DemoReport,
    StoryStuck,
    run_demo,
)
from fsm_live.diagram import to_mermaid
from fsm_live.errors import ConfigError

__all__ = ("add", "run")

_TIMELINE: Final = 14  # lines of the live timeline
_REFRESH: Final = 0.25  # seconds between redraws
_PANEL_ROWS: Final = 15  # rows of the live panel besides its timeline (+1 for the cursor)


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch a live connection survive a scripted series of faults",
        description="Start a local lwp server, a fault proxy and a client in one process, and "
        "run a scripted story through every state and transition of the lifecycle.",
        epilog="Exit codes: 0 the story ran and its summary agrees with the trace (or SIGTERM "
        "stopped it); 1 a step got stuck or the counts disagree; 2 bad arguments; "
        "130 Ctrl-C (it closes first; a second Ctrl-C cuts that short).",
    )
    parser.add_argument(
        "--duration",
        type=_duration,
        default=DEFAULT_DURATION,
        metavar="S",
        help=f"length of the story in seconds (default {DEFAULT_DURATION:g}, "
        f"at least {MIN_DURATION:g})",
    )
    parser.add_argument(
        "--seed", type=int, default=1, metavar="N", help="seed of the jitter (default 1)"
    )
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write the transitions here (overwritten; default: a temp file)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="DEBUG logs of every logger (secrets redacted)"
    )
    parser.set_defaults(handler=run)


def _duration(text: str) -> float:
    return parse_number(text, unit="number of seconds", at_least=MIN_DURATION)


class _PlainView:
    """One line per transition and per event, written as they happen."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.started_at = 0.0

    def attach(self, conn: LiveConnection, duration: float) -> None:
        self.conn = conn

    def transition(self, record: TransitionRecord) -> None:
        self._write(plain_transition(record, self.conn.started_at))

    def event(self, event: DemoEvent) -> None:
        self._write(plain_event(event))

    def messages_taken(self, count: int) -> None:
        pass  # the story's notes and the summary show the count

    def _write(self, line: str) -> None:
        self.out.stdout.write(line + "\n")
        self.out.stdout.flush()


class _LiveView:
    """A rich live panel, redrawn a few times a second by :meth:`show`."""

    def __init__(self, out: Output) -> None:
        self.console = Console(file=out.stdout)
        self.timeline: deque[TransitionRecord | DemoEvent] = deque(maxlen=_TIMELINE)
        self.conn: LiveConnection | None = None
        self.duration = 0.0
        self.taken = 0
        self.started = anyio.Event()  # set by the first transition (start)

    def attach(self, conn: LiveConnection, duration: float) -> None:
        self.conn, self.duration = conn, duration

    def transition(self, record: TransitionRecord) -> None:
        self.timeline.append(record)
        self.started.set()

    def event(self, event: DemoEvent) -> None:
        self.timeline.append(event)

    def messages_taken(self, count: int) -> None:
        self.taken = count

    async def show(self) -> None:
        await self.started.wait()
        conn = self.conn
        assert conn is not None, "a transition before attach()"
        styles = StateStyles(conn.spec)
        with (
            Live(console=self.console, auto_refresh=False, transient=False) as live,
            logs_above(live),  # -v's lines above the panel, not through it
        ):
            while True:
                elapsed = anyio.current_time() - conn.started_at
                rows = max(3, self.console.height - _PANEL_ROWS)  # fit the terminal
                live.update(
                    demo_panel(
                        conn.stats(),
                        list(self.timeline)[-rows:],
                        conn.started_at,
                        elapsed,
                        self.duration,
                        self.taken,
                        styles=styles,
                    ),
                    refresh=True,
                )
                await anyio.sleep(_REFRESH)


def run(args: argparse.Namespace, out: Output) -> int:
    trace: Path = args.trace
    try:
        if trace is not None:
            check_writable(trace, "--trace")
    except ConfigError as exc:
        out.problem(f"{PROG} demo: error: {exc}")
        return EXIT_BAD_USAGE
    configure_logging(args.verbose, out.stderr)
    try:
        if trace is None:
            handle, name = tempfile.mkstemp(prefix="fsm-live-demo-", suffix=".jsonl")
            os.close(handle)
            trace = Path(name)
        return anyio.run(
            run_until_stopped,
            "demo",
            out,
            functools.partial(_run, args, trace, out),
            backend="asyncio",
        )
    except OSError as exc:
        out.problem(_os_problem(exc))
        return 1


def _os_problem(exc: OSError) -> str:
    return f"{PROG} demo: error: {exc.filename or 'trace'}: {exc.strerror or type(exc).__name__}"


async def _run(args: argparse.Namespace, trace: Path, out: Output, stop: Stop) -> int:
    """The story, shown as it runs, then its summary; the exit code (0 when a signal
    stopped the story: :func:`run_until_stopped` makes that 130 after SIGINT)."""
    view = _LiveView(out) if out.stdout.isatty() else _PlainView(out)
    report: DemoReport | None = None
    problem: str | None = None
    async with anyio.create_task_group() as display:
        if isinstance(view, _LiveView):
            display.start_soon(view.show)
        try:
            with stop.cancelling():  # a signal ends the story; run_demo closes on its way out
                report = await run_demo(view, duration=args.duration, seed=args.seed, trace=trace)
        except StoryStuck as exc:
            problem = f"{PROG} demo: {exc}"
        except OSError as exc:
            problem = _os_problem(exc)
        display.cancel_scope.cancel()
    if problem is not None:
        out.problem(problem)
        return 1
    if report is None:
        return 0
    _print_summary(report, out)
    return 0 if report.summary.agrees else 1


def _print_summary(report: DemoReport, out: Output) -> None:
    diagram = to_mermaid(default_machine().spec, counts=report.summary.edges)
    if out.stdout.isatty():
        console = Console(file=out.stdout)
        console.print(summary_tables(report))
    else:
        out.stdout.write("\n".join(summary_lines(report)) + "\n")
    out.stdout.write("\nthe lifecycle spec, each edge with how often it was taken:\n\n")
    out.text(diagram)
    if not report.summary.agrees:
        out.problem(f"{PROG} demo: the summary's counts disagree with the connection's counters")
