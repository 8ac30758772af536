"""A report as plain data (``fsm-live report --json``): numbers, strings, lists, maps.

Seconds are seconds, shares are fractions (0.992, not 99.2), rates are per hour,
and a figure that cannot be known is null: ``availability`` with nothing
observed, percentiles of no values, and the stats figures (``heartbeats``,
``messages``, ``tokens``, ``resources``, ``failures``) of a trace without
stats records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from fsm_live.diagnostics.percentiles import Percentiles
from fsm_live.diagnostics.report import ConnectionReport, edge_counts, failures_over_time
from fsm_live.spec import Spec

__all__ = ("as_json", "report_json")


def _percentiles(figures: Percentiles) -> dict[str, Any]:
    return attrs.asdict(figures)


#: The sections that come from stats records: all null for a trace without any.
_STATS_SECTIONS = ("failures", "heartbeats", "messages", "tokens", "resources")


def _stats_figures(report: ConnectionReport) -> dict[str, Any]:
    totals = report.totals
    if totals is None:
        return dict.fromkeys(_STATS_SECTIONS)
    width, over_time = failures_over_time(report)
    return {
        "failures": {
            "by_class": report.failures,
            "over_time": {"bin_seconds": width, "counts": over_time},
        },
        "heartbeats": {
            "sent": totals.heartbeats_sent,
            "acked": totals.heartbeats_acked,
            "success_rate": totals.heartbeat_success,
            "rtt_seconds": _percentiles(report.rtt),
        },
        "messages": {
            "in": totals.messages_in,
            "out": totals.messages_out,
            "duplicates_dropped": totals.duplicates_dropped,
        },
        "tokens": {
            "refreshes": totals.token_refreshes,
            "refresh_failures": totals.token_refresh_failures,
            "cookie_refreshes": totals.cookie_refreshes,
        },
        "resources": {
            "tasks_max": totals.tasks_max,
            "buffered_max": totals.buffered_max,
        },
    }


def as_json(report: ConnectionReport, spec: Spec) -> dict[str, Any]:
    """One report's figures as JSON-ready data (see the module docstring)."""
    data: dict[str, Any] = {
        "name": report.name,
        "connections": report.connections,
        "runs": report.runs,
        "observed_seconds": report.observed,
        "ended_in": report.ended_in,
        "availability": report.availability,
        "states": {name: attrs.asdict(figures) for name, figures in report.states.items()},
        "reconnects": report.reconnects,
        "reconnects_per_hour": report.reconnects_per_hour,
        "time_back": {**_percentiles(report.time_back), "not_back": report.unrecovered},
        **_stats_figures(report),
        "edges": [
            {"source": source, "trigger": trigger, "dest": dest, "count": count}
            for (source, trigger, dest), count in edge_counts(spec, report)
        ],
        "bad_lines": report.bad_lines,
    }
    return data


def report_json(
    spec: Spec, reports: Sequence[ConnectionReport], everything: ConnectionReport
) -> dict[str, Any]:
    """The whole ``--json`` document: the spec's name, ``all``, and each connection."""
    return {
        "spec": spec.name,
        "all": as_json(everything, spec),
        "connections": [as_json(report, spec) for report in reports],
    }
