"""``--metrics-port N`` (and ``--metrics-host``) of ``connect`` and ``fleet``.

The endpoint is bound before the event loop starts, so that a port in use or a
missing prometheus-client is one line and exit 2 before anything connects; the
collector is registered and the endpoint served once the connection or fleet
exists, on the event loop (a scrape reads stats on that loop, with no thread:
:mod:`fsm_live.metrics.server`).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fsm_live.cli._output import PROG, Output, host
from fsm_live.errors import ConfigError
from fsm_live.metrics.server import DEFAULT_HOST, MetricsServer, new_registry, serve_metrics

__all__ = ("add_arguments", "port_number", "registered", "start")


def port_number(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535, for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, fleet: bool = False) -> None:
    """Add ``--metrics-port`` and ``--metrics-host`` (and, for a fleet,
    ``--metrics-per-connection``)."""
    parser.add_argument(
        "--metrics-port",
        metavar="N",
        type=port_number,
        help="serve Prometheus metrics on http://HOST:N/metrics while it runs "
        "(0: any free port; needs pip install 'fsm_live[metrics]')",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="HOST",
        type=host,
        default=DEFAULT_HOST,
        help=f"the address --metrics-port binds (default {DEFAULT_HOST})",
    )
    if fleet:
        parser.add_argument(
            "--metrics-per-connection",
            action="store_true",
            help="label every series with its account (connection=KEY); off "
            "by default, to keep the number of series bounded",
        )


def start(args: argparse.Namespace, command: str, out: Output) -> MetricsServer | None:
    """The endpoint ``--metrics-port`` asks for, serving (None without the flag), its URL
    said on stderr.  Raises ConfigError naming the flag: prometheus-client is not
    installed, or the address cannot be bound."""
    if args.metrics_port is None:
        return None
    flag = f"--metrics-port {args.metrics_port}"
    try:
        registry = new_registry()
        server = serve_metrics(registry, args.metrics_port, host=args.metrics_host)
    except ImportError as exc:  # MissingExtra: says what to install
        raise ConfigError("--metrics-port", str(exc)) from None
    except OSError as exc:
        raise ConfigError(
            f"{flag} --metrics-host {args.metrics_host}", f"cannot listen: {exc.strerror or exc}"
        ) from None
    out.stderr.write(f"{PROG} {command}: metrics on {server.url}\n")
    out.stderr.flush()
    return server


@contextlib.asynccontextmanager
async def registered(
    server: MetricsServer | None, collector: Callable[[], Any]
) -> AsyncIterator[None]:
    """Register ``collector()`` (made here, on the event loop) on ``server``'s registry
    and serve it on this loop for the duration, then stop the server.  Nothing
    without a server."""
    if server is None:
        yield
        return
    made = collector()
    server.registry.register(made)
    try:
        async with server:
            yield
    finally:
        server.registry.unregister(made)
        server.close()
