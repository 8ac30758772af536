"""``fsm-live serve``: a local lwp server to connect to, with faults on a schedule.

Prints the WebSocket URL it listens on (and its token URL), then one line per
fault as it fires and as a timed fault ends.  ``--faults`` takes the schedule
syntax of :mod:`fsm_live.lwp.faults` (``"5s close 1012; 12s
blackhole 20s"``), or ``@FILE`` / a file path with one fault per line.

Exit codes: 0 after SIGTERM or ``--duration``; 1 when the server cannot listen
(the port is taken, ...); 2 for bad arguments or a bad schedule; 130 after
Ctrl-C (SIGINT): the server closes first, and a second Ctrl-C or SIGTERM cuts
that short.  SIGTERM also prints ``SIGTERM: stopping`` on stdout (a service's log
says why it stopped); Ctrl-C prints only the one line every command prints,
``fsm-live serve: interrupted``.
"""

from __future__ import annotations

import argparse
import functools
import math

import anyio

from fsm_live.cli._output import (
    EXIT_BAD_USAGE,
    PROG,
    Output,
    Subparsers,
    host,
    parse_number,
    seconds,
)
from fsm_live.cli._signals import Stop, run_until_stopped
from fsm_live.cli.connect import configure_logging
from fsm_live.lwp.faults import FaultSyntaxError, ScheduledFault, load_schedule
from fsm_live.lwp.server import FaultEvent, LwpServer

__all__ = ("add", "run", "serve")

#: Pushes every second unless --push-interval says otherwise.
DEFAULT_PUSH_INTERVAL = 1.0


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a local lwp server (tokens, pushes, faults)",
        description="Run a local WebSocket server speaking lwp: it issues tokens (GET /token "
        "with a unb cookie), checks registrations, acks heartbeats, pushes sample "
        "messages (some duplicated) and fires the faults of --faults.",
        epilog="Exit codes: 0 stopped (--duration, or SIGTERM); 1 cannot listen; 2 bad arguments "
        "or schedule; 130 Ctrl-C.",
    )
    parser.add_argument(
        "--host",
        type=host,
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="N",
        help="port to listen on (default: 0, a free port)",
    )
    parser.add_argument(
        "--faults",
        metavar="SPEC",
        help='fault schedule, e.g. "5s close 1012; 12s blackhole 20s; '
        '30s reject 401 x1", or @FILE (one fault per line)',
    )
    parser.add_argument(
        "--push-interval",
        type=_push_interval,
        default=DEFAULT_PUSH_INTERVAL,
        metavar="S",
        help="seconds between sync pushes to each registered client; 0 for none (default: 1)",
    )
    parser.add_argument(
        "--duration",
        type=seconds,
        metavar="S",
        help="stop after S seconds (default: run until SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="DEBUG logs of every logger (secrets redacted)"
    )
    parser.set_defaults(handler=run)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _push_interval(text: str) -> float:
    return parse_number(text, unit="number of seconds", at_least=0)


def run(args: argparse.Namespace, out: Output) -> int:
    try:
        schedule = load_schedule(args.faults) if args.faults else ()
    except FaultSyntaxError as exc:
        # The error names where: "--faults:1:4: ..." inline, "FILE:1:4: ..." from a file.
        where = "" if str(exc).startswith("--faults:") else "--faults: "
        out.problem(f"{PROG} serve: error: {where}{exc}")
        return EXIT_BAD_USAGE
    except UnicodeDecodeError as exc:
        path = args.faults.removeprefix("@")
        out.problem(f"{PROG} serve: error: --faults: {path}: not UTF-8 text (byte {exc.start})")
        return EXIT_BAD_USAGE
    except OSError as exc:
        out.problem(
            f"{PROG} serve: error: --faults: cannot read {exc.filename}: "
            f"{exc.strerror or type(exc).__name__}"
        )
        return EXIT_BAD_USAGE
    configure_logging(args.verbose, out.stderr)
    server = LwpServer(
        host=args.host, port=args.port, schedule=schedule, push_interval=args.push_interval or None
    )
    try:
        return anyio.run(
            run_until_stopped,
            "serve",
            out,
            functools.partial(serve, server, schedule, args.duration, out),
            backend="asyncio",
        )
    except OSError as exc:
        out.problem(
            f"{PROG} serve: error: cannot listen on {args.host}:{args.port}: "
            f"{exc.strerror or type(exc).__name__}"
        )
        return 1


async def serve(
    server: LwpServer,
    schedule: tuple[ScheduledFault, ...],
    duration: float | None,
    out: Output,
    stop: Stop,
) -> int:
    """Run ``server`` until ``stop`` is set or ``duration`` elapses, printing its
    faults; return 0 once it is closed."""

    def print_fault(event: FaultEvent) -> None:
        out.stdout.write(f"{event.at:9.3f}s  fault: {event}\n")
        out.stdout.flush()

    server.on_fault(print_fault)
    async with server:
        out.stdout.write(f"lwp server listening on {server.url} (tokens: GET {server.token_url})\n")
        for item in schedule:
            out.stdout.write(f"   scheduled: {item}\n")
        out.stdout.flush()
        with anyio.move_on_after(math.inf if duration is None else duration):
            await stop.wait()
            if not stop.interrupted:  # after Ctrl-C, "interrupted" is the one line
                assert stop.signal is not None
                out.stdout.write(f"{stop.signal.name}: stopping\n")
                out.stdout.flush()
    return 0
