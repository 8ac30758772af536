"""``fsm-live connect URL``: keep one connection alive and show how it is doing.

On a terminal: a rich live status (state, time in state, heartbeat RTT,
reconnects, messages, last error, recent transitions).  Otherwise: one plain line
per transition, a summary line (messages received included) every
``SUMMARY_INTERVAL`` seconds and one after the connection closed.  Every message
the connection receives is taken as it arrives and counted; ``-v`` also prints
each one as a line.

``--metrics-port N`` serves Prometheus metrics of the connection on
``http://127.0.0.1:N/metrics`` while it runs (:mod:`fsm_live.metrics`).

Exit codes: 0 when it ended CLOSED (``--duration`` elapsed, or SIGTERM: the
connection closes cleanly first); 3 when it ended FAILED; 2 for bad arguments,
with one line naming the flag as typed (``--backoff-max``), or the file key or
``FSM_LIVE_*`` variable a bad setting came from; 130 after Ctrl-C (SIGINT): the
connection closes cleanly first, and a second Ctrl-C or SIGTERM during that
close cuts it short.

``--protocol lwp`` needs the account's cookies (``--cookies-file PATH``, else the
``FSM_LIVE_COOKIES`` environment variable; a ``unb`` cookie is required): the
access token is fetched from ``--token-url`` (default: ``http://HOST:PORT/token``
of the WebSocket URL, as ``fsm-live serve`` answers it) before registering, after
an auth failure, and every ``token_refresh_interval``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import sys
from collections import deque
from typing import Any, Final, NamedTuple, TextIO

import anyio
import anyio.lowlevel
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from fsm_live._runtime.inbox import Handler
from fsm_live.cli import metrics_endpoint
from fsm_live.cli._output import (
    EXIT_BAD_USAGE,
    PROG,
    Output,
    Subparsers,
    check_writable,
    seconds,
)
from fsm_live.cli._signals import Stop, run_until_stopped
from fsm_live.cli.views.connection import plain_message, plain_stats, plain_transition, status_panel
from fsm_live.cli.views.live import EchoMargin, LogLines, logs_above
from fsm_live.cli.views.styles import StateStyles
from fsm_live.config import Config
from fsm_live.connection import PROTOCOLS, TRANSITIONS_LOGGER, LiveConnection
from fsm_live.core.effects import TransitionRecord
from fsm_live.credentials import CredentialsProvider, Secret
from fsm_live.errors import ConfigError, ConnectionClosed, ConnectionFailed
from fsm_live.lwp.credentials import lwp_credentials, read_cookies_file
from fsm_live.metrics.collector import ConnectionCollector
from fsm_live.transport.url import display_url

__all__ = (
    "COOKIES_ENV",
    "EXIT_BAD_USAGE",
    "EXIT_FAILED",
    "SUMMARY_INTERVAL",
    "add",
    "build_connection",
    "build_credentials",
    "configure_logging",
    "run",
)

#: The environment variable ``--protocol lwp`` takes the cookies from without --cookies-file.
COOKIES_ENV = "FSM_LIVE_COOKIES"

EXIT_FAILED = 3
#: Seconds between summary lines without a terminal.
SUMMARY_INTERVAL: Final = 10.0
_RECENT = 8
_REFRESH = 0.25  # seconds between live-status redraws
#: The transitions library's logger: a DEBUG line for every callback it runs.
_TRANSITIONS_LIBRARY = "transitions"


class _ConfigFlag(NamedTuple):
    """A flag that sets a Config field, and the names Config's errors give that field."""

    flag: str  # as typed: --backoff-max
    key: str  # Config.load's override key, which names the setting in its errors
    name: str  # how other settings' messages refer to it ("must be >= initial (1)")
    help: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


_CONFIG_FLAGS: Final = (
    _ConfigFlag(
        "--heartbeat-interval",
        "heartbeat_interval",
        "heartbeat_interval",
        "seconds between heartbeats (default 15)",
    ),
    _ConfigFlag(
        "--heartbeat-timeout",
        "heartbeat_timeout",
        "heartbeat_timeout",
        "lost after this long without inbound frames (default 30)",
    ),
    _ConfigFlag(
        "--backoff-initial",
        "backoff_initial",
        "initial",
        "first backoff ceiling in seconds (default 1)",
    ),
    _ConfigFlag(
        "--backoff-max", "backoff_maximum", "maximum", "backoff cap in seconds (default 60)"
    ),
    _ConfigFlag(
        "--open-timeout",
        "open_timeout",
        "open_timeout",
        "dial + handshake + registration limit (default 10)",
    ),
)


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "connect",
        help="keep one connection alive and show its state",
        description="Keep one WebSocket connection alive with fsm_live and show its state.",
        epilog="Exit codes: 0 closed (--duration, or SIGTERM); 3 FAILED; 2 bad arguments, or "
        "a flag's optional package not installed (the line says which extra); 130 Ctrl-C "
        "(it closes cleanly first; a second Ctrl-C cuts the close short).",
    )
    parser.add_argument("url", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "--protocol",
        metavar="NAME",
        default="ping",
        choices=sorted(PROTOCOLS),
        help="protocol adapter (default: ping)",
    )
    for option in _CONFIG_FLAGS:
        parser.add_argument(option.flag, metavar="S", type=seconds, help=option.help)
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--cookies-file",
        metavar="PATH",
        help=f"the account's cookies (name=value; ...) for --protocol lwp "
        f"(default: ${COOKIES_ENV})",
    )
    parser.add_argument(
        "--token-url",
        metavar="URL",
        help="where to GET access tokens (default: http://HOST:PORT/token of URL)",
    )
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="append every transition (and failure and stats records) as "
        "JSON lines (docs/diagnostics.md)",
    )
    parser.add_argument(
        "--duration", metavar="S", type=seconds, help="close and exit after S seconds"
    )
    metrics_endpoint.add_arguments(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="every message received, one line each, on stdout; DEBUG logs on stderr, "
        "websockets' included (the transitions library's: WARNING and up); without -v: "
        "fsm_live's INFO and up, others' WARNING and up",
    )
    parser.set_defaults(handler=run)


def configure_logging(
    verbose: bool, stream: TextIO | None = None, *, level: int = logging.ERROR
) -> LogLines:
    """Log to ``stream`` (default: ``sys.stderr``), one line per record, through the
    root logger's :class:`LogLines` (above a live display while one shows); a handler
    a previous call installed is replaced.

    Without ``-v``: ``fsm_live``'s records at ``level`` and above, other libraries'
    at WARNING and above (``level`` if higher), and no transition lines (the command
    shows the transitions itself).  ``-v``: every logger at DEBUG (the transitions
    too), except the transitions library's own lines (``Executed callback ...``):
    WARNING and above.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, LogLines)]:
        root.removeHandler(handler)
    handler = LogLines(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else max(logging.WARNING, level))
    logging.getLogger("fsm_live").setLevel(logging.NOTSET if verbose else level)
    logging.getLogger(TRANSITIONS_LOGGER).setLevel(logging.NOTSET if verbose else logging.CRITICAL)
    logging.getLogger(_TRANSITIONS_LIBRARY).setLevel(logging.WARNING)
    return handler


def build_connection(
    args: argparse.Namespace,
    credentials: CredentialsProvider | None = None,
    on_message: Handler | None = None,
) -> LiveConnection:
    """The connection the flags describe; raises ConfigError for bad values.

    A bad setting given as a flag is named as the flag (``--backoff-max: must be >=
    --backoff-initial (10), got 1``); one from ``--config`` or an ``FSM_LIVE_*``
    variable keeps the name :meth:`Config.load` gives it (file and key, or
    variable).  ``--trace`` is opened once here, so that an unwritable path is a
    ConfigError too.
    """
    given = [option for option in _CONFIG_FLAGS if getattr(args, option.dest) is not None]
    overrides = {option.key: _as_typed(getattr(args, option.dest)) for option in given}
    try:
        config = Config.load(args.config, env=os.environ, overrides=overrides)
    except ConfigError as error:
        raise _in_flag_terms(error, given) from None
    conn = LiveConnection(
        args.url,
        protocol=args.protocol,
        config=config,
        credentials=credentials,
        trace=args.trace,
        on_message=on_message,
    )
    if args.trace is not None:
        check_writable(args.trace, "--trace")
    return conn


def _as_typed(value: float) -> float:
    # A whole number as an int, as a TOML file or an FSM_LIVE_* variable gives it, so
    # that messages quote "10" as the user typed it, not "10.0".
    return int(value) if value.is_integer() else value


def _in_flag_terms(error: ConfigError, given: list[_ConfigFlag]) -> ConfigError:
    """``error`` with every setting the user gave as a flag named as that flag.

    Config.load names a setting given as an override by its override key
    (``backoff_maximum``), and a message mentions another setting by its name
    (``initial``); neither is what the user typed.  Settings from the file or the
    environment keep their names: they did not come from a flag.
    """
    field = error.field
    message = str(error).removeprefix(f"{field}: ")
    for option in given:
        if field == option.key:
            field = option.flag
        # A whole word only: not inside "backoff.initial" (a file key) or a path.
        message = re.sub(rf"(?<![\w.-]){re.escape(option.name)}(?![\w-])", option.flag, message)
    return ConfigError(field, message)


def build_credentials(
    args: argparse.Namespace, env: dict[str, str] | os._Environ[str]
) -> CredentialsProvider | None:
    """The credentials ``--protocol lwp`` needs (None for other protocols).

    Raises ConfigError: no cookies, an unreadable cookies file, cookies without
    ``unb``, a bad token URL, or cookie flags given with another protocol.  The
    messages name files and cookie names, never cookie values.
    """
    if args.protocol != "lwp":
        for flag, value in (("--cookies-file", args.cookies_file), ("--token-url", args.token_url)):
            if value is not None:
                raise ConfigError(flag, "is only used with --protocol lwp")
        return None
    if args.cookies_file is not None:
        cookies = read_cookies_file(args.cookies_file, field="--cookies-file")
        source = f"--cookies-file {args.cookies_file}"
    elif env.get(COOKIES_ENV):
        cookies = Secret(env[COOKIES_ENV])
        source = COOKIES_ENV
    else:
        raise ConfigError(
            "--protocol lwp",
            f"needs the account's cookies: --cookies-file PATH "
            f"or the {COOKIES_ENV} environment variable",
        )
    try:
        return lwp_credentials(cookies, url=args.url, token_url=args.token_url)
    except ConfigError as error:
        # Named as the user gave it: the flag (the URL with its secrets hidden), the
        # file or the variable, not the library's field name.
        message = str(error).removeprefix(f"{error.field}: ")
        if error.field == "token_url" and args.token_url is not None:
            raise ConfigError(f"--token-url {display_url(args.token_url)!r}", message) from None
        if error.field == "cookies":
            raise ConfigError(source, message) from None
        raise


def run(args: argparse.Namespace, out: Output) -> int:
    watch = _Watch(out, verbose=args.verbose)
    try:
        conn = build_connection(args, build_credentials(args, os.environ), on_message=watch.message)
        metrics = metrics_endpoint.start(args, "connect", out)
    except (ConfigError, ValueError) as exc:
        out.problem(f"{PROG} connect: error: {exc}")
        return EXIT_BAD_USAGE
    # By default an operator sees fsm_live's notices: the endpoint down (WARNING) and
    # back (INFO), reading paused and resumed; errors; other libraries' warnings.
    configure_logging(args.verbose, out.stderr, level=logging.INFO)
    watch.attach(conn)

    async def body(stop: Stop) -> int:
        async with metrics_endpoint.registered(
            metrics, functools.partial(ConnectionCollector, conn)
        ):
            return await keep_alive(conn, watch, args.duration, stop)

    try:
        return anyio.run(run_until_stopped, "connect", out, body)
    finally:
        if metrics is not None:
            metrics.close()


class _Watch:
    """What ``connect`` shows: a live status on a terminal, else plain lines."""

    conn: LiveConnection

    def __init__(self, out: Output, *, verbose: bool) -> None:
        self.out = out
        self.verbose = verbose
        self.interactive = out.stdout.isatty()
        self.console = Console(file=out.stdout)
        self.recent: deque[TransitionRecord] = deque(maxlen=_RECENT)
        self.started = anyio.Event()  # set by the first transition (start)

    def attach(self, conn: LiveConnection) -> None:
        """Watch ``conn`` (built with :meth:`message` as its ``on_message``)."""
        self.conn = conn
        conn.on_transition(self._transition)

    def _transition(self, record: TransitionRecord) -> None:
        self.recent.append(record)
        self.started.set()
        if not self.interactive:
            self._line(plain_transition(record, self.conn.started_at))

    async def message(self, message: Any) -> None:
        """The connection's ``on_message``: take every message as it arrives (the
        connection counts it), and with ``-v`` print it.  Unread messages would
        stop the reader at ``message_concurrency`` of them, and the silent link
        would then be declared lost."""
        if self.verbose:
            self._line(plain_message(message, anyio.current_time(), self.conn.started_at))

    def _line(self, line: str) -> None:
        if self.interactive:
            self.console.print(Text(line), soft_wrap=True)  # above the live status
        else:
            self.out.stdout.write(line + "\n")
            self.out.stdout.flush()

    def _panel(self) -> RenderableType:
        return EchoMargin(
            status_panel(
                self.conn.url,
                self.conn.stats(),
                self.recent,
                self.conn.started_at,
                styles=StateStyles(self.conn.spec),
            )
        )

    def _summary(self) -> str:
        return plain_stats(self.conn.stats(), anyio.current_time(), self.conn.started_at)

    async def show(self) -> None:
        """Until cancelled: redraw the live status, or write a summary line every
        ``SUMMARY_INTERVAL`` seconds; then the final status or summary line."""
        await self.started.wait()
        if self.interactive:
            await self._show_live()
        else:
            closed = False  # the latest line was written once the connection had closed
            try:
                while True:
                    await anyio.sleep(SUMMARY_INTERVAL)
                    self._line(self._summary())
                    closed = self.conn.spec.states[self.conn.state].final
            finally:
                if not closed:  # (a periodic line at the close is the final one)
                    self._line(self._summary())

    async def _show_live(self) -> None:
        with (
            Live(self._panel(), console=self.console, auto_refresh=False, transient=False) as live,
            logs_above(live),
        ):
            try:
                while True:
                    await anyio.sleep(_REFRESH)
                    live.update(self._panel(), refresh=True)
            finally:
                live.update(self._panel(), refresh=True)


async def keep_alive(
    conn: LiveConnection, watch: _Watch, duration: float | None, stop: Stop
) -> int:
    """Run the connection until ``duration`` elapses, ``stop`` is set, or it is FAILED
    for good; return the exit code (0 or :data:`EXIT_FAILED`)."""
    # The display outlives the connection, so that it shows the close too.
    async with anyio.create_task_group() as shown:
        shown.start_soon(watch.show)
        async with conn, anyio.create_task_group() as tg:
            tg.start_soon(_close_on, conn, stop)
            if duration is not None:
                tg.start_soon(_close_after, conn, duration)
            failed_in = await _wait_for_the_end(conn)
            tg.cancel_scope.cancel()
        shown.cancel_scope.cancel()
    if failed_in is not None:
        watch.out.problem(f"{PROG} connect: {failed_in}: {conn.stats().last_error}")
        return EXIT_FAILED
    return 0


async def _wait_for_the_end(conn: LiveConnection) -> str | None:
    """The failed state, once the connection is in it for good (it needs reset: a
    terminal failure, its escalation over); None once closed.  A failed state that
    retries by itself is waited through."""
    try:
        await conn.wait_for(*conn.spec.final_states)
    except ConnectionFailed:
        return conn.state
    except ConnectionClosed:  # closed because of an error (it is logged)
        return None
    return None


async def _close_after(conn: LiveConnection, duration: float) -> None:
    await anyio.sleep(duration)
    await conn.close()


async def _close_on(conn: LiveConnection, stop: Stop) -> None:
    await stop.wait()
    await conn.close()
