"""The fault-schedule syntax of ``fsm-live serve --faults``: good inputs, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsm_live.lwp.faults import (
    BlackHole,
    CloseConnections,
    Drop,
    FaultSyntaxError,
    RefuseRegistration,
    Reject,
    Restart,
    ScheduledFault,
    format_duration,
    load_schedule,
    parse_schedule,
)

EXAMPLE = (
    "5s close 1012; 12s blackhole 20s; 30s reject 401 x1; 40s refuse-reg; 50s restart 3s; 60s drop"
)


def test_the_documented_example() -> None:
    assert parse_schedule(EXAMPLE) == (
        ScheduledFault(5, CloseConnections(1012)),
        ScheduledFault(12, BlackHole(20)),
        ScheduledFault(30, Reject(401, 1)),
        ScheduledFault(40, RefuseRegistration(1)),
        ScheduledFault(50, Restart(3)),
        ScheduledFault(60, Drop()),
    )


def test_units_options_comments_and_order() -> None:
    text = """
        # a comment line
        2m reject 503 retry-after=2s x3   # trailing comment
        250ms refuse-reg x2;; 1.5s drop
        1.5s close 4500
    """
    assert parse_schedule(text) == (
        ScheduledFault(0.25, RefuseRegistration(2)),
        ScheduledFault(1.5, Drop()),  # same time: in the order written
        ScheduledFault(1.5, CloseConnections(4500)),
        ScheduledFault(120, Reject(503, 3, retry_after=2)),
    )
    assert parse_schedule("") == ()
    assert parse_schedule("  ; # nothing\n") == ()


def test_str_is_the_syntax_and_reads_back() -> None:
    schedule = parse_schedule(EXAMPLE + "; 0.25s reject 503 x2 retry-after=1.5s")
    text = "; ".join(str(item) for item in schedule)
    assert "250ms reject 503 x2 retry-after=1.5s" in text
    assert parse_schedule(text) == schedule
    assert [format_duration(s) for s in (0, 0.25, 1.5, 20, 0.0015)] == [
        "0s",
        "250ms",
        "1.5s",
        "20s",
        "0.0015s",
    ]


@pytest.mark.parametrize(
    ("text", "where", "token", "problem"),
    [
        ("5s blackhol 2s", "1:4", "blackhol", "unknown fault (expected one of: drop, blackhole"),
        ("5 drop", "1:1", "5", "expected a time such as 20s"),
        ("5s drop now", "1:9", "now", "unexpected argument after 'drop'"),
        ("1s drop; 5s blackhole", "1:22", "", "blackhole needs a duration"),
        ("5s blackhole 0s", "1:14", "0s", "expected a duration greater than zero"),
        ("5s close 1006", "1:10", "1006", "expected a close code a server may send"),
        ("5s close abc", "1:10", "abc", "expected a close code"),
        ("5s reject 302", "1:11", "302", "expected an HTTP status from 400 to 599"),
        ("5s reject 503 x0", "1:15", "x0", "expected xN (N >= 1) or retry-after=DURATION"),
        ("5s reject 503 retry-after=soon", "1:27", "soon", "expected a Retry-After duration"),
        ("5s refuse-reg retry-after=1s", "1:15", "retry-after=1s", "expected xN (N >= 1)"),
        ("1s drop\n\n  7s restart", "3:13", "", "restart needs a downtime"),
    ],
)
def test_errors_name_the_line_column_and_token(
    text: str, where: str, token: str, problem: str
) -> None:
    with pytest.raises(FaultSyntaxError) as caught:
        parse_schedule(text, source="--faults")
    error = caught.value
    assert str(error).startswith(f"--faults:{where}: {problem}")
    assert error.token == token
    if token:
        assert str(error).endswith(f"got {token!r}")
    assert isinstance(error, ValueError)


def test_load_schedule_reads_at_file_and_plain_paths(tmp_path: Path) -> None:
    path = tmp_path / "faults.txt"
    path.write_text("# one per line\n1s drop\n2s close 1012\n2s oops\n", encoding="utf-8")
    with pytest.raises(FaultSyntaxError, match=rf"^{path}:4:4: unknown fault"):
        load_schedule(f"@{path}")
    path.write_text("1s drop\n2s close 1012\n", encoding="utf-8")
    expected = (ScheduledFault(1, Drop()), ScheduledFault(2, CloseConnections(1012)))
    assert load_schedule(f"@{path}") == expected
    assert load_schedule(str(path)) == expected
    assert load_schedule("1s drop") == (ScheduledFault(1, Drop()),)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        load_schedule(f"@{tmp_path / 'missing.txt'}")
