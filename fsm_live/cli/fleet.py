"""``fsm-live fleet CONFIG``: keep every account of a fleet file connected.

On a terminal: a rich live dashboard (members per state, totals with messages,
the worst members, recent transitions).  Otherwise: one plain line per
transition, prefixed with the account's key, a line once every account is
connected, a summary line (messages received included) every
``SUMMARY_INTERVAL`` seconds and one after the fleet closed.  Every member takes
each message it receives as it arrives (counted in its stats).  ``--trace-dir
DIR`` appends each account's transitions to ``DIR/<key>.jsonl`` (see
:func:`trace_file_name`).

With ``--coordinator etcd://HOST:PORT[/PREFIX] --worker-id ID`` the process is
one worker of a cluster (docs/cluster.md): every worker reads the same fleet
file, each account runs on one of them at a time, the dashboard and the summary
lines show this worker's accounts and the cluster's members, and SIGTERM (or
the end of ``--duration``) first hands this worker's accounts over to the
others, paced, then leaves.  With ``--trace-dir DIR`` the worker also appends
its holds (which account, from when to when, why it ended) to
``DIR/cluster-<worker>.jsonl``.

Exit codes: 0 once ``--duration`` elapsed or SIGTERM arrived and every
connection is closed; 1 when the coordinator cannot be joined (etcd
unreachable, the worker id held by a live worker: one line); 2 for bad
arguments, a bad fleet file, or a trace directory or file that cannot be
written (one line naming the file and account, or the path); 130 after Ctrl-C
(SIGINT): every connection closes first, and a second Ctrl-C or SIGTERM during
that close cuts it short.  Members that crashed are reported on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import logging
import math
import os
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from rich.console import Console, Group, RenderableType
from rich.live import Live

from fsm_live.cli import metrics_endpoint
from fsm_live.cli._output import (
    EXIT_BAD_USAGE,
    PROG,
    Output,
    Subparsers,
    check_writable,
    positive_number,
    seconds,
)
from fsm_live.cli._signals import Stop, run_until_stopped
from fsm_live.cli.connect import configure_logging
from fsm_live.cli.views.cluster import cluster_table, plain_cluster
from fsm_live.cli.views.fleet import (
    CLOSED,
    CLOSING,
    RUNNING,
    Phase,
    fleet_panel,
    key_column,
    plain_fleet_transition,
    plain_summary,
)
from fsm_live.cli.views.live import logs_above
from fsm_live.cli.views.styles import StateStyles
from fsm_live.cluster import (
    ClusterSettings,
    Coordinator,
    CoordinatorError,
    CoordinatorUrl,
    EtcdCoordinator,
    LocalCoordinator,
    MemberView,
)
from fsm_live.cluster.etcd import require_aetcd
from fsm_live.core.effects import TransitionRecord
from fsm_live.errors import ConfigError, MissingExtra
from fsm_live.fleet import DEFAULT_RECONNECTS_PER_SECOND, Fleet
from fsm_live.fleet.config import FleetConfig
from fsm_live.metrics.collector import FleetCollector

__all__ = ("SUMMARY_INTERVAL", "add", "run", "run_fleet", "trace_file_name")

#: Seconds between summary lines without a terminal.
SUMMARY_INTERVAL = 10.0
_REFRESH = 1.0  # seconds between dashboard redraws: a stats() pass costs O(members)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]|^\.")
_MAX_NAME = 200  # file systems allow 255 bytes; ".jsonl" and margin


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "fleet",
        help="keep every account of a fleet file connected",
        description="Keep one connection per account of a TOML fleet file alive and show "
        "how the fleet is doing.",
        epilog="Exit codes: 0 closed (--duration, or SIGTERM); 1 the cluster could not be "
        "joined (--coordinator); 2 bad arguments or fleet file, or a flag's optional "
        "package not installed (the line says which extra); 130 Ctrl-C (every connection "
        "closes first; a second Ctrl-C cuts that short).",
    )
    parser.add_argument(
        "config",
        metavar="CONFIG",
        help="TOML fleet file ([accounts.NAME] tables; see docs/fleet.md)",
    )
    parser.add_argument(
        "--trace-dir",
        metavar="DIR",
        type=Path,
        help="append each account's transitions to DIR/<key>.jsonl",
    )
    parser.add_argument(
        "--duration", metavar="S", type=seconds, help="close everything and exit after S seconds"
    )
    parser.add_argument(
        "--reconnects-per-second",
        metavar="N",
        type=positive_number,
        default=DEFAULT_RECONNECTS_PER_SECOND,
        help="reconnect attempts per second of all accounts together "
        f"(default {DEFAULT_RECONNECTS_PER_SECOND:g})",
    )
    parser.add_argument(
        "--coordinator",
        metavar="etcd://HOST:PORT[/PREFIX]",
        help="run as one worker of a cluster coordinated by etcd: each account on one "
        "worker at a time (docs/cluster.md; needs fsm_live[cluster])",
    )
    parser.add_argument(
        "--worker-id",
        metavar="ID",
        help="this worker's id in the cluster, unique among live workers (with --coordinator)",
    )
    metrics_endpoint.add_arguments(parser, fleet=True)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="DEBUG logs on stderr, websockets' included (the transitions library's: "
        "WARNING and up); without -v: fsm_live's INFO and up, others' WARNING and up",
    )
    parser.set_defaults(handler=run)


def trace_file_name(key: str) -> str:
    """``<key>.jsonl`` with every character outside ``A-Za-z0-9_.-`` (and a leading
    dot) written as ``%XX`` of its UTF-8 bytes: distinct keys, distinct files,
    never a path separator.  A name that would be too long for a file system is
    cut and suffixed with a digest of the key."""
    safe = _UNSAFE.sub(
        lambda match: "".join(f"%{byte:02X}" for byte in match.group().encode()), key
    )
    if len(safe) > _MAX_NAME:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        safe = f"{safe[: _MAX_NAME - 17]}~{digest}"
    return f"{safe}.jsonl"


def run(args: argparse.Namespace, out: Output) -> int:
    try:
        config = FleetConfig.load(args.config)
        if args.trace_dir is not None:
            _check_trace_dir(args.trace_dir, config)
        coordinator = _coordinator(args)
        metrics = metrics_endpoint.start(args, "fleet", out)
    except ConfigError as exc:
        out.problem(f"{PROG} fleet: error: {exc}")
        return EXIT_BAD_USAGE
    configure_logging(args.verbose, out.stderr, level=logging.INFO)  # as connect's

    def collector(fleet: Fleet) -> AbstractAsyncContextManager[None]:
        return metrics_endpoint.registered(
            metrics,
            functools.partial(FleetCollector, fleet, per_connection=args.metrics_per_connection),
        )

    async def body(stop: Stop) -> int:
        return await run_fleet(
            config,
            args.trace_dir,
            args.duration,
            out,
            stop=stop,
            reconnects_per_second=args.reconnects_per_second,
            metrics=collector if metrics is not None else None,
            coordinator=coordinator,
        )

    try:
        return anyio.run(run_until_stopped, "fleet", out, body)
    finally:
        if metrics is not None:
            metrics.close()


def _coordinator(args: argparse.Namespace) -> Coordinator | None:
    """The coordinator ``--coordinator`` and ``--worker-id`` ask for (None: the
    in-process one); ConfigError naming the flag for a bad or missing one."""
    if args.coordinator is None:
        if args.worker_id is not None:
            raise ConfigError("--worker-id", "only with --coordinator")
        return None
    url = CoordinatorUrl.parse(args.coordinator)
    if not args.worker_id:
        raise ConfigError("--coordinator", "needs --worker-id ID (unique among the workers)")
    try:
        require_aetcd()
    except MissingExtra as exc:  # says what to install
        raise ConfigError("--coordinator", str(exc)) from None
    hold_log = None
    if args.trace_dir is not None:
        hold_log = args.trace_dir / trace_file_name(f"cluster-{args.worker_id}")
        check_writable(hold_log, "--trace-dir")
    settings = ClusterSettings.from_env(os.environ)
    try:
        return EtcdCoordinator(
            url.endpoint,
            worker_id=args.worker_id,
            prefix=url.prefix,
            settings=settings,
            hold_log=hold_log,
        )
    except ConfigError as exc:
        raise ConfigError("--worker-id", str(exc).removeprefix("worker_id: ")) from None


def _check_trace_dir(trace_dir: Path, config: FleetConfig) -> None:
    """Create ``trace_dir`` and open every account's trace file in it once; raise
    ConfigError (``--trace-dir PATH: reason``) for the first that fails, before any
    connection starts."""
    try:
        trace_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--trace-dir {trace_dir}", exc.strerror or str(exc)) from None
    for account in config.accounts:
        check_writable(trace_dir / trace_file_name(account.key), "--trace-dir")


async def run_fleet(
    config: FleetConfig,
    trace_dir: Path | None,
    duration: float | None,
    out: Output,
    *,
    reconnects_per_second: float = DEFAULT_RECONNECTS_PER_SECOND,
    stop: Stop | None = None,
    metrics: Callable[[Fleet], AbstractAsyncContextManager[None]] | None = None,
    coordinator: Coordinator | None = None,
) -> int:
    """Run every account of ``config`` until ``duration`` elapses or ``stop`` is set
    (None: only ``duration`` ends it); return the exit code.  ``metrics``: a context
    the fleet runs in once its members are added (a metrics collector registered).
    ``coordinator``: this worker's (None: the in-process one); a cluster's worker
    hands its accounts over (:meth:`Fleet.drain`) before it closes, and exits 1 in
    one line when it cannot join (2 when a package of the ``cluster`` extra is missing).

    On a terminal the dashboard is drawn from the moment every member is added until
    the fleet has closed, and its last frame is the fleet once closed."""
    close_timeout = max(account.config.close_timeout for account in config.accounts)
    fleet = Fleet(
        close_timeout=close_timeout,
        reconnects_per_second=reconnects_per_second,
        coordinator=coordinator,
    )
    try:
        return await _run_fleet(fleet, config, trace_dir, duration, out, stop, metrics)
    except MissingExtra as exc:  # the install, as a missing extra's flag is: bad usage
        out.problem(f"{PROG} fleet: error: {exc}")
        return EXIT_BAD_USAGE
    except CoordinatorError as exc:
        out.problem(f"{PROG} fleet: error: {exc}")
        return 1


async def _run_fleet(
    fleet: Fleet,
    config: FleetConfig,
    trace_dir: Path | None,
    duration: float | None,
    out: Output,
    stop: Stop | None,
    metrics: Callable[[Fleet], AbstractAsyncContextManager[None]] | None,
) -> int:
    if not out.stdout.isatty():
        code = await _run(fleet, config, trace_dir, duration, out, stop, metrics, None)
        if code == 0:
            width = key_column(account.key for account in config.accounts)
            out.stdout.write(plain_summary(fleet.stats(), fleet.started_at, width) + "\n")
    else:
        title = f"{PROG} fleet {config.path.name}"
        async with anyio.create_task_group() as drawing:  # draws during the close too
            dashboard = _Dashboard(fleet, title, out, drawing)
            try:
                code = await _run(fleet, config, trace_dir, duration, out, stop, metrics, dashboard)
            finally:
                drawing.cancel_scope.cancel()
                dashboard.finish()
    if code == 0:
        for key in fleet:
            if (crash := fleet.crash(key)) is not None:
                out.problem(f"{PROG} fleet: {key} crashed: {crash}")
    return code


async def _run(
    fleet: Fleet,
    config: FleetConfig,
    trace_dir: Path | None,
    duration: float | None,
    out: Output,
    stop: Stop | None,
    metrics: Callable[[Fleet], AbstractAsyncContextManager[None]] | None,
    dashboard: _Dashboard | None,
) -> int:
    """Add every account to ``fleet``, run until the end, close; return the exit code.
    ``dashboard``: shown once every member is added (None: plain lines instead)."""
    width = key_column(account.key for account in config.accounts)  # of the plain lines
    async with fleet:
        if dashboard is None:

            def print_line(key: str, record: TransitionRecord) -> None:
                line = plain_fleet_transition(key, record, fleet.started_at, width)
                out.stdout.write(line + "\n")
                out.stdout.flush()

            fleet.on_transition(print_line)
        for account in config.accounts:
            trace = None if trace_dir is None else trace_dir / trace_file_name(account.key)
            try:
                await fleet.add(
                    account.key,
                    account.url,
                    trace=trace,
                    on_message=_take,
                    **account.connection_options(),
                )
            except ConfigError as exc:  # what the connection refuses beyond the file's checks
                out.problem(f"{PROG} fleet: error: {config.path}: accounts.{account.key}: {exc}")
                return EXIT_BAD_USAGE
            except OSError as exc:  # the trace file went away since run() checked it
                out.problem(f"{PROG} fleet: error: --trace-dir {trace}: {exc.strerror or exc}")
                return EXIT_BAD_USAGE
        watched = contextlib.nullcontext() if metrics is None else metrics(fleet)
        async with watched, anyio.create_task_group() as task_group:
            clustered = not isinstance(fleet.coordinator, LocalCoordinator)
            if dashboard is not None:
                dashboard.start()
            elif clustered:
                task_group.start_soon(_print_summaries, fleet, out, width)
            else:
                task_group.start_soon(_report_all_connected, fleet, out)
                task_group.start_soon(_print_summaries, fleet, out, width)
            await _wait_for_the_end(duration, stop)
            if clustered:
                await fleet.drain()  # hand over, paced; a second signal cuts it short
            task_group.cancel_scope.cancel()
        if dashboard is not None:
            dashboard.closing()
    return 0


async def _take(message: Any) -> None:
    """Every member's ``on_message``: take the message as it arrives (its connection
    counts it, which the summary and the dashboard show).  Unread messages would stop
    a member's reader at ``message_concurrency`` of them, and the silent link would
    then be declared lost."""


async def _wait_for_the_end(duration: float | None, stop: Stop | None) -> None:
    with anyio.move_on_after(math.inf if duration is None else duration):
        if stop is None:
            await anyio.sleep_forever()
        else:
            await stop.wait()


async def _report_all_connected(fleet: Fleet, out: Output) -> None:
    """One line when every member is first in a success state (CONNECTED) at once."""
    success = [name for name, state in fleet.machine.states.items() if state.success]
    while sum(fleet.count(name) for name in success) < len(fleet):
        await fleet.wait_changed()
    elapsed = anyio.current_time() - fleet.started_at
    out.stdout.write(f"all {len(fleet)} connections {'/'.join(success)} after {elapsed:.3f} s\n")
    out.stdout.flush()


async def _print_summaries(fleet: Fleet, out: Output, key_width: int) -> None:
    while True:
        await anyio.sleep(SUMMARY_INTERVAL)
        out.stdout.write(plain_summary(fleet.stats(), fleet.started_at, key_width) + "\n")
        if not isinstance(fleet.coordinator, LocalCoordinator):
            out.stdout.write(plain_cluster(*_cluster_figures(fleet)) + "\n")
        out.stdout.flush()


def _cluster_figures(fleet: Fleet) -> tuple[str, str, int, int, tuple[MemberView, ...]]:
    """This worker's id and status, its accounts, the fleet's, the cluster's members."""
    coordinator = fleet.coordinator
    return (
        coordinator.worker_id,
        coordinator.status,
        len(fleet),
        len(fleet.accounts()),
        coordinator.members(),
    )


class _Dashboard:
    """The dashboard on a terminal: drawn every ``_REFRESH`` seconds from :meth:`start`
    until the fleet has closed (its close included, in ``drawing``), then once more
    by :meth:`finish`: the last frame is the fleet closed, never a stale one."""

    def __init__(self, fleet: Fleet, title: str, out: Output, drawing: TaskGroup) -> None:
        self._fleet = fleet
        self._title = title
        self._styles = StateStyles(fleet.machine.spec)
        self._console = Console(file=out.stdout)
        self._drawing = drawing
        self._live: Live | None = None
        self._logs = contextlib.ExitStack()  # log lines above the dashboard while it shows
        self._phase: Phase = RUNNING

    def _frame(self) -> RenderableType:
        stats = self._fleet.stats()
        panel = fleet_panel(
            stats,
            self._fleet.started_at,
            self._title,
            styles=self._styles,
            phase=self._phase,
            endpoints=stats.endpoints,
        )
        if isinstance(self._fleet.coordinator, LocalCoordinator):
            return panel
        return Group(panel, cluster_table(*_cluster_figures(self._fleet)))

    def _draw(self) -> None:
        if self._live is not None:
            self._live.update(self._frame(), refresh=True)

    def start(self) -> None:
        """Show the dashboard and redraw it every ``_REFRESH`` seconds."""
        self._live = Live(self._frame(), console=self._console, auto_refresh=False, transient=False)
        self._live.start(refresh=True)
        self._logs.enter_context(logs_above(self._live))
        self._drawing.start_soon(self._redraw)

    async def _redraw(self) -> None:
        while True:
            await anyio.sleep(_REFRESH)
            self._draw()

    def closing(self) -> None:
        """Say that the fleet is closing its members (at once, not at the next redraw)."""
        self._phase = CLOSING
        self._draw()

    def finish(self) -> None:
        """Draw the last frame, the fleet closed, and leave the terminal to what follows
        (nothing if the dashboard was never shown)."""
        if self._live is not None:
            self._phase = CLOSED
            self._draw()
            self._logs.close()
            self._live.stop()
            self._live = None
