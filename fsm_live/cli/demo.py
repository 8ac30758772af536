"""``fsm-live demo``: the lifecycle, end to end, in one command (see :mod:`fsm_live.demo`).

On a terminal: a live panel (state, counters, heartbeat RTT, the latest
transitions and faults), then the summary as tables.  Otherwise: one plain line
per transition and per story event, then the summary as plain lines.  Both end
with the spec's Mermaid diagram, each edge annotated with how often it was taken.

Exit codes: 0 when the story ran to its end and the summary agrees with the
trace; 1 when a step got stuck or the counts disagree; 2 for bad arguments
(``--trace`` a path that cannot be written included).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Final

import anyio
from rich.console import Console
from rich.live import Live

from fsm_live.cli._output import PROG, Output, Subparsers, check_writable, parse_number
from fsm_live.cli.connect import EXIT_BAD_USAGE, configure_logging
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
from fsm_live.render import plain_transition
from fsm_live.render_demo import demo_panel, plain_event, summary_lines, summary_tables

__all__ = ("add", "run")

_TIMELINE: Final = 14  # lines of the live timeline
_REFRESH: Final = 0.25  # seconds between redraws
_PANEL_ROWS: Final = 14  # rows of the live panel besides its timeline (+1 for the cursor)


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="watch a live connection survive a scripted series of faults",
        description="Start a local lwp server, a fault proxy and a client in one process, and "
                    "run a scripted story through every state and transition of the lifecycle.")
    parser.add_argument("--duration", type=_duration, default=DEFAULT_DURATION, metavar="S",
                        help=f"length of the story in seconds (default {DEFAULT_DURATION:g}, "
                             f"at least {MIN_DURATION:g})")
    parser.add_argument("--seed", type=int, default=1, metavar="N",
                        help="seed of the jitter (default 1)")
    parser.add_argument("--trace", type=Path, metavar="FILE",
                        help="write the transitions here (overwritten; default: a temp file)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="DEBUG logs of every logger (secrets redacted)")
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
        self.started = anyio.Event()  # set by the first transition (start)

    def attach(self, conn: LiveConnection, duration: float) -> None:
        self.conn, self.duration = conn, duration

    def transition(self, record: TransitionRecord) -> None:
        self.timeline.append(record)
        self.started.set()

    def event(self, event: DemoEvent) -> None:
        self.timeline.append(event)

    async def show(self) -> None:
        await self.started.wait()
        conn = self.conn
        assert conn is not None, "a transition before attach()"
        with Live(console=self.console, auto_refresh=False, transient=False) as live:
            while True:
                elapsed = anyio.current_time() - conn.started_at
                rows = max(3, self.console.height - _PANEL_ROWS)  # fit the terminal
                live.update(demo_panel(conn.stats(), list(self.timeline)[-rows:],
                                       conn.started_at, elapsed, self.duration), refresh=True)
                await anyio.sleep(_REFRESH)


def run(args: argparse.Namespace, out: Output) -> int:
    trace: Path = args.trace
    try:
        if trace is not None:
            check_writable(trace, "--trace")
    except ConfigError as exc:
        out.problem(f"{PROG} demo: error: {exc}")
        return EXIT_BAD_USAGE
    configure_logging(args.verbose)
    try:
        if trace is None:
            handle, name = tempfile.mkstemp(prefix="fsm-live-demo-", suffix=".jsonl")
            os.close(handle)
            trace = Path(name)
        report = anyio.run(_run, args, trace, out, backend="asyncio")
    except StoryStuck as exc:
        out.problem(f"{PROG} demo: {exc}")
        return 1
    except OSError as exc:
        out.problem(f"{PROG} demo: error: {exc.filename or 'trace'}: "
                    f"{exc.strerror or type(exc).__name__}")
        return 1
    _print_summary(report, out)
    return 0 if report.summary.agrees else 1


async def _run(args: argparse.Namespace, trace: Path, out: Output) -> DemoReport:
    if not out.stdout.isatty():
        return await run_demo(_PlainView(out), duration=args.duration, seed=args.seed,
                              trace=trace)
    view = _LiveView(out)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(view.show)
        report = await run_demo(view, duration=args.duration, seed=args.seed, trace=trace)
        task_group.cancel_scope.cancel()
    return report


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


