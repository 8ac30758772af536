"""Serving a registry over HTTP: prometheus-client's own server, on a thread of its own.

:func:`serve_metrics` starts it (``GET /metrics``, the text exposition format)
and returns a :class:`MetricsServer` to read the bound port from and to close.
It binds ``127.0.0.1`` unless told otherwise: metrics name hosts and states, so
exposing them on every interface is a choice to make on purpose.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from fsm_live.metrics.collector import require_prometheus

if TYPE_CHECKING:  # the `metrics` extra; imported at run time after require_prometheus()
    from prometheus_client.registry import CollectorRegistry

__all__ = ("DEFAULT_HOST", "MetricsServer", "new_registry", "serve_metrics")

#: Where :func:`serve_metrics` binds unless told otherwise.
DEFAULT_HOST = "127.0.0.1"


def new_registry() -> CollectorRegistry:
    """A fresh registry holding prometheus-client's process collector (``process_*``:
    memory, CPU, open files), ready for a :class:`ConnectionCollector` or a
    :class:`FleetCollector`.  Raises :class:`~fsm_live.errors.MissingExtra` without
    prometheus-client."""
    require_prometheus()  # the `metrics` extra: a one-line MissingExtra without it
    from prometheus_client import ProcessCollector
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


class MetricsServer:
    """A running metrics endpoint: the ``registry`` it serves, ``host`` and ``port``
    (the bound one, also for port 0), ``url``; :meth:`close` stops it (idempotent;
    also as a context manager)."""

    def __init__(
        self, server: Any, thread: threading.Thread, host: str, registry: CollectorRegistry
    ) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.registry = registry
        self.port: int = server.server_port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(
    registry: CollectorRegistry, port: int, host: str = DEFAULT_HOST
) -> MetricsServer:
    """Serve ``registry`` on ``host:port`` (port 0: any free port) from a daemon thread.

    Raises :class:`~fsm_live.errors.MissingExtra` without prometheus-client and
    OSError when the address cannot be bound (in use, not a local address).
    """
    require_prometheus()  # the `metrics` extra: a one-line MissingExtra without it
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread, host, registry)
