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

from fsm_live.counters import COUNT_NAMES, Counts

__all__ = (
    "FAILURE_KEYS",
    "STATS_FIGURES",
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
#: The keys of a stats record: these, then one per count (:data:`~fsm_live.counters.COUNT_NAMES`).
STATS_FIGURES: Final = (
    "t",
    "kind",
    "state",
    "reconnects",
    "failures",
    "rtts",
    "buffered",
    "tasks_alive",
)
STATS_KEYS: Final = (*STATS_FIGURES, *COUNT_NAMES)
#: Written by fsm_live before 0.2 for ``tasks_alive``; still read.
_LEGACY_KEYS: Final = {"tasks": "tasks_alive"}


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


@attrs.frozen(kw_only=True)
class StatsRecord(Counts):
    """A connection's counts at ``t`` (:class:`~fsm_live.counters.Counts`), each over
    its run so far; ``rtts``: the heartbeat round trips (seconds) acked since the
    previous stats record; ``buffered`` and ``tasks_alive`` at ``t``."""

    line: int
    t: float
    state: str
    reconnects: int
    failures: Mapping[str, int] = attrs.field(hash=False)
    rtts: tuple[float, ...]
    buffered: int
    tasks_alive: int


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
        row = {_LEGACY_KEYS.get(key, key): value for key, value in row.items()}
        # A count the record lacks was not counted when it was written: 0.
        row = {**dict.fromkeys(COUNT_NAMES, 0), **row}
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
            line=line,
            t=_number(row, "t"),
            state=_text(row, "state"),
            reconnects=_count(row, "reconnects"),
            failures=dict(failures),
            rtts=tuple(float(r) for r in rtts),
            buffered=_count(row, "buffered"),
            tasks_alive=_count(row, "tasks_alive"),
            **{name: _count(row, name) for name in COUNT_NAMES},
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
