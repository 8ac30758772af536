"""A JSONL trace of a connection: its transitions, and the figures that are not transitions.

One JSON object per line; ``t`` is float seconds since the connection object
started (the event loop's monotonic clock), and never decreases within a run.
Three kinds of record (docs/diagnostics.md):

* a **transition** has exactly five keys, and no ``kind``: ``t``, ``from``,
  ``to``, ``trigger``, ``reason`` (a string, possibly empty, never a secret);
* a **failure** follows the transition a failure caused, at the same ``t``:
  ``{"t", "kind": "failure", "class"}`` (the error class of the spec's table);
* a **stats** record holds the connection's counters at ``t``, each over the
  connection's life (:data:`STATS_KEYS`), and ``rtts``, the heartbeat round
  trips in seconds acked since the previous stats record.  One is written at
  the first transition or heartbeat ack at least ``interval`` seconds after the
  previous one (or once :data:`MAX_PENDING_RTTS` round trips wait), and one
  when the trace is closed, so the last stats record of a run holds its totals.
  No timer of its own: a connection costs nothing more for it.

A file may hold several runs one after the other (a fleet appends to it); each
run starts with a transition out of the spec's initial state, at ``t`` near 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final, Self

from fsm_live._runtime.stats import Stats
from fsm_live.core.effects import TransitionRecord
from fsm_live.diagnostics.records import FAILURE_KEYS, STATS_KEYS, TRANSITION_KEYS

__all__ = (
    "FAILURE_KEYS",
    "KINDS",
    "MAX_PENDING_RTTS",
    "STATS_KEYS",
    "TRACE_KEYS",
    "TraceWriter",
    "read_trace",
    "stats_row",
    "trace_line",
)

#: The keys of a transition row: the format is defined once, with its reader.
TRACE_KEYS: Final = TRANSITION_KEYS
#: The ``kind`` of the records that are not transitions.
KINDS: Final = ("failure", "stats")
#: Round trips a writer keeps for its next stats record; at this many, it writes one.
MAX_PENDING_RTTS: Final = 256


def trace_line(record: TransitionRecord, started_at: float) -> str:
    """The JSON line (without newline) for one transition."""
    return _transition_line(record, round(record.at - started_at, 6))


def _transition_line(record: TransitionRecord, t: float) -> str:
    return json.dumps(
        {
            "t": t,
            "from": record.source,
            "to": record.dest,
            "trigger": record.trigger,
            "reason": record.reason,
        },
        ensure_ascii=False,
    )


class TraceWriter:
    """Appends a connection's records to a file, line-buffered, so a crash loses
    nothing written.

    With ``stats`` (the connection's ``stats()``) and ``clock``, it also writes
    failure and stats records (see the module docstring); feed it heartbeat acks
    through :meth:`heartbeat_acked`.  Without them, transitions only.
    """

    def __init__(
        self,
        path: str | Path,
        started_at: float,
        *,
        stats: Callable[[], Stats] | None = None,
        clock: Callable[[], float] | None = None,
        interval: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.started_at = started_at
        self.interval = interval
        self._stats = stats
        self._clock = clock
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1)
        self._last_t = 0.0
        self._stats_at = started_at  # when the last stats record was written
        self._rtts: list[float] = []

    def _t(self, at: float) -> float:
        # A timer may run a hair before the clock reads its deadline and is then taken
        # as due: t is kept from going back by that much.
        t = self._last_t = max(self._last_t, round(at - self.started_at, 6))
        return t

    def write(self, record: TransitionRecord) -> None:
        """Write one transition (and its failure, and stats if they are due); a
        no-op after :meth:`close`."""
        file = self._file
        if file is None:
            return
        t = self._t(record.at)
        file.write(_transition_line(record, t) + "\n")
        if self._stats is None:
            return
        if record.error_class is not None:
            file.write(
                json.dumps(
                    dict(zip(FAILURE_KEYS, (t, "failure", record.error_class), strict=True)),
                    ensure_ascii=False,
                )
                + "\n"
            )
        if record.at - self._stats_at >= self.interval:
            self._write_stats(record.at)

    def heartbeat_acked(self, at: float, rtt: float) -> None:
        """A heartbeat's round trip (an :data:`~fsm_live._runtime.stats.AckObserver`)."""
        if self._file is None or self._stats is None:
            return
        self._rtts.append(rtt)
        if at - self._stats_at >= self.interval or len(self._rtts) >= MAX_PENDING_RTTS:
            self._write_stats(at)

    def _write_stats(self, at: float) -> None:
        assert self._file is not None
        assert self._stats is not None
        stats = self._stats()
        rtts, self._rtts = self._rtts, []
        self._stats_at = at
        self._file.write(json.dumps(stats_row(self._t(at), stats, rtts), ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Write the last stats record (with stats), then close; idempotent."""
        if self._file is None:
            return
        if self._stats is not None and self._clock is not None:
            self._write_stats(self._clock())
        self._file.close()
        self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stats_row(t: float, stats: Stats, rtts: list[float]) -> dict[str, Any]:
    """A stats record (keys :data:`STATS_KEYS`) of ``stats`` at ``t``."""
    return {
        "t": t,
        "kind": "stats",
        "state": stats.state,
        "reconnects": stats.reconnects,
        "failures": dict(sorted(stats.failures.items())),
        "rtts": [round(rtt, 6) for rtt in rtts],
        "buffered": stats.buffered,
        "tasks_alive": stats.tasks_alive,
        **stats.counts(),
    }


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    """The transitions of a trace file, in order (records of other kinds left out;
    for tests and tools: :mod:`fsm_live.diagnostics` reads every kind)."""
    with Path(path).open(encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()]
    return [row for row in rows if "kind" not in row]
