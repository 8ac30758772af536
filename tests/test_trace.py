"""fsm_live._runtime.trace: one JSON object per line, exactly the keys t, from, to,
trigger, reason in that order; ``t`` in seconds since the connection started."""

from __future__ import annotations

import json
from pathlib import Path

from fsm_live._runtime.trace import TRACE_KEYS, TraceWriter, read_trace, trace_line
from fsm_live.core.effects import TransitionRecord

RECORDS = [
    TransitionRecord(
        at=100.25, source="DISCONNECTED", dest="CONNECTING", trigger="start", reason="started"
    ),
    TransitionRecord(
        at=101.5,
        source="CONNECTING",
        dest="RECONNECTING",
        trigger="connect_failed",
        reason="network: refused",
        error_class="network",
    ),
    TransitionRecord(at=103.0, source="RECONNECTING", dest="CLOSED", trigger="close"),
]


def test_the_keys_are_the_five_documented() -> None:
    assert TRACE_KEYS == ("t", "from", "to", "trigger", "reason")


def test_a_line_has_exactly_the_keys_in_order() -> None:
    line = trace_line(RECORDS[1], started_at=100.0)
    assert "\n" not in line
    row = json.loads(line)
    assert tuple(row) == TRACE_KEYS  # error_class is not traced
    assert row == {
        "t": 1.5,
        "from": "CONNECTING",
        "to": "RECONNECTING",
        "trigger": "connect_failed",
        "reason": "network: refused",
    }


def test_t_is_float_seconds_since_the_start_rounded_to_microseconds() -> None:
    record = TransitionRecord(at=12.000000123456, source="a", dest="b", trigger="go")
    row = json.loads(trace_line(record, started_at=2.0))
    assert row["t"] == 10.0
    assert isinstance(row["t"], float)
    row = json.loads(trace_line(TransitionRecord(1.0 + 1 / 3, "a", "b", "go"), 1.0))
    assert row["t"] == 0.333333


def test_an_empty_reason_is_an_empty_string() -> None:
    assert json.loads(trace_line(RECORDS[2], 100.0))["reason"] == ""


def test_non_ascii_is_written_as_is() -> None:
    record = TransitionRecord(
        at=1.0, source="zu", dest="offen", trigger="öffnen", reason="Verbindung geöffnet ✓"
    )
    line = trace_line(record, 0.0)
    assert "öffnen" in line
    assert "✓" in line
    assert json.loads(line)["reason"] == "Verbindung geöffnet ✓"


def test_the_writer_writes_one_line_per_transition(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path, started_at=100.0) as writer:
        for record in RECORDS:
            writer.write(record)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [trace_line(record, 100.0) for record in RECORDS]
    assert [tuple(row) for row in read_trace(path)] == [TRACE_KEYS] * 3
    assert [row["t"] for row in read_trace(path)] == [0.25, 1.5, 3.0]


def test_each_line_is_on_disk_as_soon_as_written(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    writer = TraceWriter(str(path), started_at=100.0)
    try:
        writer.write(RECORDS[0])
        # Read through another file object while the writer is still open: a crash
        # now would lose nothing.
        assert read_trace(path) == [json.loads(trace_line(RECORDS[0], 100.0))]
    finally:
        writer.close()
    assert writer.path == path


def test_the_writer_appends_to_an_existing_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path, 100.0) as writer:
        writer.write(RECORDS[0])
    with TraceWriter(path, 100.0) as writer:
        writer.write(RECORDS[1])
    assert [row["to"] for row in read_trace(path)] == ["CONNECTING", "RECONNECTING"]


def test_writing_after_close_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    writer = TraceWriter(path, 100.0)
    writer.write(RECORDS[0])
    writer.close()
    writer.write(RECORDS[1])
    writer.close()  # twice is fine
    assert len(read_trace(path)) == 1


def test_read_trace_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n" + trace_line(RECORDS[0], 100.0) + "\n\n   \n", encoding="utf-8")
    assert read_trace(path) == [json.loads(trace_line(RECORDS[0], 100.0))]
