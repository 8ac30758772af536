"""A JSONL trace of transitions: one object per line, exactly five keys.

``t`` (float seconds since the connection object started, monotonic), ``from``,
``to``, ``trigger``, ``reason`` (a string, possibly empty, never a secret).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Self

from fsm_live.core.effects import TransitionRecord

__all__ = ("TRACE_KEYS", "TraceWriter", "read_trace", "trace_line")

TRACE_KEYS = ("t", "from", "to", "trigger", "reason")


def trace_line(record: TransitionRecord, started_at: float) -> str:
    """The JSON line (without newline) for one transition."""
    return json.dumps({
        "t": round(record.at - started_at, 6),
        "from": record.source,
        "to": record.dest,
        "trigger": record.trigger,
        "reason": record.reason,
    }, ensure_ascii=False)


class TraceWriter:
    """Appends transitions to a file, line-buffered, so a crash loses nothing written."""

    def __init__(self, path: str | Path, started_at: float) -> None:
        self.path = Path(path)
        self.started_at = started_at
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, record: TransitionRecord) -> None:
        """Write one transition; a no-op after :meth:`close`."""
        if self._file is not None:
            self._file.write(trace_line(record, self.started_at) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    """The transitions of a trace file, in order (for tests and tools)."""
    with Path(path).open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]
