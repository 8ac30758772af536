"""Reading a trace file back: each line parsed into a typed record, or a bad line.

Pure functions over text (:func:`parse_line`, :func:`parse_lines`); only
:func:`read_trace_file` reads a file.  The record kinds are those
:mod:`fsm_live._runtime.trace` writes (docs/diagnostics.md): a
:class:`Transition` (five keys, no ``kind``), a :class:`FailureRecord`
(``kind: failure``) and a :class:`StatsRecord` (``kind: stats``).  Line numbers
count from 1 and include blank lines, as an editor shows them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

__all__ = (
    "FAILURE_KEYS",
    "STATS_KEYS",
    "TRANSITION_KEYS",
    "BadLine",
    "FailureRecord",
    "Line",
    "Record",
    "StatsRecord",
    "TraceFile",
    "Transition",
    "parse_line",
    "parse_lines",
    "read_trace_file",
)

# The format, defined here once: the runtime's writer (fsm_live._runtime.trace) imports
# these keys; this room reads traces without importing the runtime.
#: The keys of a transition row (it has no ``kind``).
TRANSITION_KEYS: Final = ("t", "from", "to", "trigger", "reason")
#: The keys of a failure record.
FAILURE_KEYS: Final = ("t", "kind", "class")
#: The keys of a stats record.
STATS_KEYS: Final = (
    "t",
    "kind",
    "state",
    "connects",
    "reconnects",
    "failures",
    "heartbeats_sent",
    "heartbeats_acked",
    "rtts",
    "messages_in",
    "messages_out",
    "duplicates_dropped",
    "token_refreshes",
    "token_refresh_failures",
    "cookie_refreshes",
    "buffered",
    "tasks",
)


@attrs.frozen
class Transition:
    """A transition row: at ``t`` (seconds since its run started), ``source`` ->
    ``dest`` by ``trigger``, because of ``reason``."""

    line: int
    t: float
    source: str
    dest: str
    trigger: str
    reason: str

    @property
    def edge(self) -> tuple[str, str, str]:
        """``(source, trigger, dest)``, as the spec and ``Stats.transitions`` key edges."""
        return (self.source, self.trigger, self.dest)


@attrs.frozen
class FailureRecord:
    """The error class of the failure that caused the transition just before it."""

    line: int
    t: float
    error_class: str


@attrs.frozen
class StatsRecord:
    """A connection's counters at ``t``, each over its run so far; ``rtts``: the
    heartbeat round trips (seconds) acked since the previous stats record."""

    line: int
    t: float
    state: str
    connects: int
    reconnects: int
    failures: Mapping[str, int] = attrs.field(hash=False)
    heartbeats_sent: int
    heartbeats_acked: int
    rtts: tuple[float, ...]
    messages_in: int
    messages_out: int
    duplicates_dropped: int
    token_refreshes: int
    token_refresh_failures: int
    cookie_refreshes: int
    buffered: int
    tasks: int


@attrs.frozen
class BadLine:
    """A line that is no record: not JSON, or not one of the record kinds."""

    line: int
    problem: str


Record = Transition | FailureRecord | StatsRecord
Line = Record | BadLine


class _Bad(Exception):
    pass


def _number(row: Mapping[str, Any], key: str) -> float:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f"{key!r} is not a finite number: {value!r}")
    return float(value)


def _count(row: Mapping[str, Any], key: str) -> int:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"{key!r} is not a count: {value!r}")
    return value


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise _Bad(f"{key!r} is not a string: {value!r}")
    return value


def _keys(row: Mapping[str, Any], expected: tuple[str, ...], what: str) -> None:
    missing = [key for key in expected if key not in row]
    extra = [key for key in row if key not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(map(str, extra))}"] if extra else []
        )
        raise _Bad(f"a {what} record needs the keys {', '.join(expected)} ({'; '.join(parts)})")


def parse_line(text: str, line: int) -> Line:
    """The record on one line of a trace (``line`` is its number), or a :class:`BadLine`."""
    try:
        row = json.loads(text)
    except ValueError as exc:
        return BadLine(line, f"not JSON ({exc.args[0].partition(':')[0]})")
    if not isinstance(row, dict):
        return BadLine(line, f"not a JSON object but {type(row).__name__}")
    try:
        return _record(row, line)
    except _Bad as exc:
        return BadLine(line, str(exc))


def _record(row: dict[str, Any], line: int) -> Record:
    kind = row.get("kind")
    if kind is None:
        _keys(row, TRANSITION_KEYS, "transition")
        return Transition(
            line,
            _number(row, "t"),
            _text(row, "from"),
            _text(row, "to"),
            _text(row, "trigger"),
            _text(row, "reason"),
        )
    if kind == "failure":
        _keys(row, FAILURE_KEYS, "failure")
        return FailureRecord(line, _number(row, "t"), _text(row, "class"))
    if kind == "stats":
        _keys(row, STATS_KEYS, "stats")
        failures = row["failures"]
        if not isinstance(failures, dict) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in failures.values()
        ):
            raise _Bad(f"'failures' is not a mapping of class -> count: {failures!r}")
        rtts = row["rtts"]
        if not isinstance(rtts, list) or not all(
            isinstance(r, int | float) and not isinstance(r, bool) for r in rtts
        ):
            raise _Bad(f"'rtts' is not a list of seconds: {rtts!r}")
        return StatsRecord(
            line,
            _number(row, "t"),
            _text(row, "state"),
            _count(row, "connects"),
            _count(row, "reconnects"),
            dict(failures),
            _count(row, "heartbeats_sent"),
            _count(row, "heartbeats_acked"),
            tuple(float(r) for r in rtts),
            _count(row, "messages_in"),
            _count(row, "messages_out"),
            _count(row, "duplicates_dropped"),
            _count(row, "token_refreshes"),
            _count(row, "token_refresh_failures"),
            _count(row, "cookie_refreshes"),
            _count(row, "buffered"),
            _count(row, "tasks"),
        )
    raise _Bad(f"unknown record kind {kind!r} (known: failure, stats)")


def parse_lines(lines: Iterable[str]) -> list[Line]:
    """Every non-blank line's record or :class:`BadLine`, in order, numbered from 1."""
    return [parse_line(text, number) for number, text in enumerate(lines, 1) if text.strip()]


@attrs.frozen
class TraceFile:
    """One trace file read: its ``lines`` (records and bad lines, in order)."""

    path: Path
    lines: tuple[Line, ...]

    @property
    def records(self) -> list[Record]:
        """The records, bad lines left out."""
        return [item for item in self.lines if not isinstance(item, BadLine)]

    @property
    def bad_lines(self) -> list[BadLine]:
        return [item for item in self.lines if isinstance(item, BadLine)]


def read_trace_file(path: str | Path) -> TraceFile:
    """Read and parse a trace file.  Raises OSError (it cannot be read) and
    UnicodeDecodeError (it is not UTF-8 text)."""
    path = Path(path)
    with path.open(encoding="utf-8") as file:
        return TraceFile(path, tuple(parse_lines(file)))
