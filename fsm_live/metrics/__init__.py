"""Prometheus metrics of a connection or a fleet, read at scrape time.

Needs prometheus-client (``pip install 'fsm_live[metrics]'``); without it,
creating a collector or a server raises :class:`~fsm_live.errors.MissingExtra`.

::

    from fsm_live.metrics import ConnectionCollector, new_registry, serve_metrics

    registry = new_registry()                  # with the process collector
    registry.register(ConnectionCollector(connection))
    async with serve_metrics(registry, port=9100):   # 127.0.0.1 by default
        ...                                          # served on this event loop

The families: :mod:`fsm_live.metrics.collector`.
"""

from fsm_live.metrics.collector import ConnectionCollector, FleetCollector
from fsm_live.metrics.server import MetricsServer, new_registry, serve_metrics

__all__ = (
    "ConnectionCollector",
    "FleetCollector",
    "MetricsServer",
    "new_registry",
    "serve_metrics",
)
