"""The counts a connection keeps: declared once, here, and read everywhere.

:class:`Counts` is the declaration.  Every count only grows over a connection's
life, so counts add up across runs and across connections.  What reads them:

* ``LiveConnection.stats()`` (:class:`~fsm_live._runtime.stats.Stats` extends
  :class:`Counts`) and the runtime's counters (which the engine increments);
* a trace's stats records (one key per count, ``docs/diagnostics.md``), read back
  by ``fsm-live report`` and added up over runs;
* ``Fleet.stats()`` (added up over members);
* the Prometheus metrics (``fsm_live_<metric>_total``, one per count: ``metric``
  below);
* the CLI's views, by name.

A new count is one field here; nothing else has to list it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs

__all__ = ("COUNT_NAMES", "Counts", "add_up", "describe", "metric_name")


def _count(meaning: str, *, metric: str | None = None) -> Any:
    return attrs.field(default=0, metadata={"meaning": meaning, "metric": metric})


@attrs.define
class Counts:
    """What a connection counted over its life (each only grows)."""

    connects: int = _count("times a success state was entered")
    heartbeats_sent: int = _count("heartbeats sent")
    heartbeats_acked: int = _count("heartbeats the peer acknowledged")
    messages_in: int = _count(
        "messages delivered to the application (duplicates excluded)",
        metric="messages_received",
    )
    messages_out: int = _count("messages written to a link, each once", metric="messages_sent")
    resent: int = _count(
        "frames sent again on a new link (still in this process, or not acknowledged, "
        "when a link broke)"
    )
    acknowledged: int = _count("frames the peer acknowledged (protocols with acknowledgements)")
    unacknowledged: int = _count(
        "frames given up on without an acknowledgement: a send() after ack_timeout, "
        "a request() at its timeout (RequestTimeout)"
    )
    duplicates_dropped: int = _count("inbound duplicates dropped")
    handler_errors: int = _count("on_message handler calls that raised")
    token_refreshes: int = _count("access token refreshes that succeeded")
    token_refresh_failures: int = _count("access token refreshes that failed")
    cookie_refreshes: int = _count("cookie refreshes that succeeded")

    def counts(self) -> dict[str, int]:
        """The counts by name, in declaration order."""
        return {name: getattr(self, name) for name in COUNT_NAMES}


#: Every count's name, in declaration order.
COUNT_NAMES: Final = tuple(field.name for field in attrs.fields(Counts))


def add_up(items: Iterable[Counts]) -> dict[str, int]:
    """The counts of ``items`` added up, by name (zeros for none)."""
    totals = dict.fromkeys(COUNT_NAMES, 0)
    for item in items:
        for name in COUNT_NAMES:
            totals[name] += getattr(item, name)
    return totals


def describe(name: str) -> str:
    """What the count ``name`` counts (KeyError for a name that is not a count)."""
    return str(attrs.fields_dict(Counts)[name].metadata["meaning"])


def metric_name(name: str) -> str:
    """The Prometheus counter of the count ``name``: ``fsm_live_<metric>_total``."""
    metric = attrs.fields_dict(Counts)[name].metadata["metric"]
    return f"fsm_live_{metric or name}_total"
