"""The views of ``fsm-live fleet`` (fsm_live/cli/views/fleet.py), rendered into a
``StringIO`` console of a fixed size: the terminals an operator has (150x50, 80x24)
and narrower ones.

State names are read from the spec (its order and roles), never written here, so the
suite passes with every state renamed (tests/test_renamed_states.py); the
abbreviation rule is shown on names of its own.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fsm_live.cli.views.fleet import (
    CLOSING,
    EndpointStatus,
    endpoint_lines,
    fleet_panel,
    plain_fleet_transition,
    plain_summary,
    state_labels,
)
from fsm_live.cli.views.styles import StateStyles
from fsm_live.core.effects import TransitionRecord
from fsm_live.fleet.stats import ConnectionSummary, FleetStats, FleetTransition
from fsm_live.spec import Spec

pytestmark = pytest.mark.timeout(30)

SPEC = Spec.default()
STYLES = StateStyles(SPEC)
STATES = list(SPEC.states)
(SUCCESS,) = SPEC.success_states
(FAILED,) = SPEC.failed_states
#: A state that is neither initial, success, failed nor final, logged at WARNING: where a
#: member backs off (not named WAITING, which the renamed-states run would rename in
#: f-strings).
BACKING_OFF = next(
    name
    for name, state in SPEC.states.items()
    if name != SPEC.initial
    and not (state.success or state.failed or state.final)
    and state.log_level == "WARNING"
)

RECORD = TransitionRecord(
    at=12.5,
    source=SUCCESS,
    dest=BACKING_OFF,
    trigger="lost",
    reason="lost: closed 1006",
    error_class="lost",
)


def stats(
    *,
    members: int = 3,
    worst: int = 2,
    recent: int = 1,
    crashed: int = 1,
    key: str = "bob",
) -> FleetStats:
    counts = dict.fromkeys(STATES, 0)
    counts[SUCCESS] = 1
    counts[BACKING_OFF] = members - 2
    return FleetStats(
        at=70.0,
        connections=members,
        states=counts,
        crashed=crashed,
        transitions_total=9,
        transitions_per_minute=4.0,
        failures={"lost": 2},
        connects=3,
        reconnects=1,
        heartbeats_sent=10,
        heartbeats_acked=9,
        messages_in=5,
        messages_out=4,
        worst=(
            ConnectionSummary("[bold]x[/bold]", SUCCESS, 0, 3.0, "", "RuntimeError: boom"),
            *(
                ConnectionSummary(f"{key}{i}", BACKING_OFF, 2, 7.25, "lost: closed 1006")
                for i in range(worst - 1)
            ),
        ),
        recent=tuple(
            FleetTransition(f"{key}{i}", TransitionRecord(**{**_fields(RECORD), "at": 10.0 + i}))
            for i in range(recent)
        ),
    )


def _fields(record: TransitionRecord) -> dict[str, object]:
    return {
        "at": record.at,
        "source": record.source,
        "dest": record.dest,
        "trigger": record.trigger,
        "reason": record.reason,
        "error_class": record.error_class,
    }


def render(renderable: object, width: int = 100, height: int = 25) -> list[str]:
    console = Console(
        file=io.StringIO(), width=width, height=height, color_system=None, highlight=False
    )
    console.print(renderable)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue().splitlines()


def panel(snapshot: FleetStats, **options: object) -> object:
    return fleet_panel(snapshot, 10.0, "fsm-live fleet f.toml", styles=STYLES, **options)  # type: ignore[arg-type]


def body(lines: list[str]) -> list[str]:
    """The panel's lines without its side borders."""
    return [line.strip().strip("│").strip() for line in lines]


# -- plain lines ----------------------------------------------------------------------------


def test_plain_lines() -> None:
    assert plain_fleet_transition("bob", RECORD, started_at=10.0) == (
        f"bob     2.500s  {SUCCESS} -> {BACKING_OFF}  [lost] (lost: closed 1006)"
    )
    assert plain_summary(stats(), started_at=10.0) == (
        f"summary    60.000s  3 connections: {SUCCESS} 1, {BACKING_OFF} 1; 1 crashed; "
        "9 transitions (4/min); failures: lost 2; heartbeats 9/10 acked; "
        "messages 5 in, 4 out"
    )


# -- the dashboard --------------------------------------------------------------------------


def test_dashboard_panel() -> None:
    lines = body(render(panel(stats()), width=100, height=40))
    assert lines[0].startswith("╭─ fsm-live fleet f.toml · running 60.00 s ─")
    assert lines[1].split() == [*STATES, "crashed"]
    assert lines[2].split() == [str(stats().states[name]) for name in STATES] + ["1"]
    totals = lines.index("3 connections, 9 transitions (4/min), failures: lost 2")
    assert lines[totals + 1] == "heartbeats 9/10 acked, messages 5 in, 4 out"
    worst = lines[lines.index("worst") + 1 : lines.index("recent transitions, newest first") - 1]
    assert worst[0].split() == ["account", "state", "failures", "in", "state", "last", "error"]
    # The key is shown as written (never read as markup); a crash shows as CRASHED.
    assert worst[1].split() == [
        "[bold]x[/bold]",
        "CRASHED",
        "0",
        "3.0",
        "s",
        "RuntimeError:",
        "boom",
    ]
    assert worst[2].split() == ["bob0", BACKING_OFF, "2", "7.2", "s", "lost:", "closed", "1006"]
    recent = lines.index("recent transitions, newest first")
    assert lines[recent + 1].split() == [
        "0.000s",
        "bob0",
        SUCCESS,
        "->",
        BACKING_OFF,
        "[lost]",
        "(lost:",
        "closed",
        "1006)",
    ]


@pytest.mark.parametrize(("width", "height"), [(150, 50), (80, 24), (60, 20), (100, 17)])
def test_the_dashboard_fits_the_terminal(width: int, height: int) -> None:
    snapshot = stats(members=300, worst=10, recent=64, key="account-with-a-long-name@example.org/")
    lines = render(panel(snapshot), width=width, height=height)
    # Two lines stay free below (the line "interrupted" and the prompt) and two
    # columns right (where a terminal echoes ^C), so the last frame stays whole.
    assert len(lines) <= height - 2
    assert all(len(line.rstrip()) <= width - 2 for line in lines)
    assert lines[0].startswith("╭")
    assert lines[-1].startswith("╰")
    text = body(lines)
    recent = [line for line in text if "->" in line]
    assert recent, text
    times = [float(line.split()[0].removesuffix("s")) for line in recent]
    assert times == sorted(times, reverse=True)  # newest first
    assert times[0] == 63.0  # the newest of the 64 is shown
    header = next(line for line in text if line.startswith("recent transitions"))
    assert header == f"recent transitions, newest first ({len(recent)} of 64)"


def counts_shown(lines: list[str]) -> list[tuple[str, str]]:
    """(name or label, count) over the counts: every other line from the panel's
    first, up to the first line that is not names and counts (the counts wrap onto
    more rows when one row cannot hold every name whole)."""
    shown: list[tuple[str, str]] = []
    for header, values in zip(lines[1::2], lines[2::2], strict=False):
        words, numbers = header.strip("│ ").split(), values.strip("│ ").split()
        if not words or not all(n.isdigit() for n in numbers) or len(words) != len(numbers):
            break
        shown += zip(words, numbers, strict=True)
    return shown


def count_names(lines: list[str]) -> list[str]:
    """The names over the counts (see :func:`counts_shown`)."""
    return [name for name, _ in counts_shown(lines)]


def test_a_tiny_terminal_keeps_the_counts_and_drops_the_lists() -> None:
    lines = render(panel(stats(members=300, worst=10, recent=64)), width=80, height=10)
    assert len(lines) <= 8
    assert count_names(lines) == [*STATES, "crashed"]
    assert not any("->" in line for line in lines)


def test_a_tall_terminal_shows_every_recent_transition_and_says_nothing_is_cut() -> None:
    text = body(render(panel(stats(recent=5)), width=150, height=50))
    assert "recent transitions, newest first" in text
    assert sum("->" in line for line in text) == 5
    assert "worst" in text


@pytest.mark.parametrize("width", [150, 80])
def test_every_state_name_is_whole_at_80_columns_and_more(width: int) -> None:
    """Whole names, on as many rows as it takes (one at 150 columns, two at 80)."""
    lines = render(panel(stats(members=300)), width=width, height=24)
    assert count_names(lines) == [*STATES, "crashed"]
    for name in STATES:  # each count right-aligned under its name
        row = next(n for n, line in enumerate(lines) if f" {name} " in f" {line.strip('│')} ")
        end = lines[row].index(name) + len(name)
        assert lines[row + 1][end - 1] != " "
        assert lines[row + 1][end] == " "


@pytest.mark.parametrize("width", [70, 60])
def test_narrower_whole_names_take_two_rows(width: int) -> None:
    lines = render(panel(stats(members=300)), width=width, height=24)
    assert count_names(lines) == [*STATES, "crashed"]


@pytest.mark.parametrize("width", [50, 40])
def test_narrower_still_the_names_are_shortened_and_stay_distinct(width: int) -> None:
    """Too narrow for the names whole, even on two rows, they are cut to distinct
    head…tail labels; names short enough (another spec's) stay whole."""
    shown = counts_shown(render(panel(stats(members=300)), width=width, height=24))
    labels = [label for label, _ in shown]
    assert len(labels) == len(STATES) + 1
    assert len(set(labels)) == len(labels)
    for name, label in zip([*STATES, "crashed"], labels, strict=True):
        head, cut, tail = label.partition("…")
        assert (name.startswith(head) and name.endswith(tail)) if cut else name == label
    assert shown[STATES.index(BACKING_OFF)][1] == "298"


def test_labels_keep_the_head_and_the_tail_of_names_that_share_a_stem() -> None:
    names = ["IDLE", "HANDSHAKING", "HANDSHAKEN", "REHANDSHAKING", "DONE"]
    assert state_labels(names, 20) == {name: name for name in names}
    assert state_labels(names, 8) == {
        "IDLE": "IDLE",
        "HANDSHAKING": "HAND…ING",
        "HANDSHAKEN": "HAND…KEN",
        "REHANDSHAKING": "REHA…ING",
        "DONE": "DONE",
    }
    # When the balanced split ("ABC…Z1" twice) collides, the next that does not wins.
    assert state_labels(["ABCDXYZ1", "ABCDWYZ1"], 6) == {
        "ABCDXYZ1": "A…XYZ1",
        "ABCDWYZ1": "A…WYZ1",
    }
    # None: no label of that width tells these apart.
    assert state_labels(["AAAAXAAAA", "AAAAYAAAA"], 5) is None


def test_the_closing_and_closed_phases_are_in_the_title() -> None:
    assert "· closing 60.00 s" in render(panel(stats(), phase=CLOSING))[0]
    assert "· closed 60.00 s" in render(panel(stats(), phase="closed"))[0]


# -- the endpoint's slot ----------------------------------------------------------------------


def test_no_endpoint_given_no_endpoint_line() -> None:
    assert not any("endpoint" in line for line in render(panel(stats()), height=40))


def test_endpoint_states() -> None:
    up = EndpointStatus("127.0.0.1:8765", up=True, since=15.0, members=300)
    down = EndpointStatus("feed.example.org:443", up=False, since=40.0, members=1)
    probing = EndpointStatus("other.example.org:443", up=False, since=45.0, probing=True)
    waiting = EndpointStatus("third.example.org:443", up=False, since=50.0, next_probe=76.5)
    late = EndpointStatus("late.example.org:443", up=False, since=55.0, next_probe=74.0)
    lines = [
        line.plain
        for line in endpoint_lines([up, probing, down, waiting, late], 10.0, at=75.0, width=100)
    ]
    assert lines == [  # down first, the oldest outage first
        "endpoint feed.example.org:443  down since 30.0 s (for 35.00 s) · 1 member",
        "endpoint other.example.org:443  down since 35.0 s (for 30.00 s), probing",
        "endpoint third.example.org:443  down since 40.0 s (for 25.00 s) · next probe in 1.5 s",
        "… and 2 more endpoints: 1 down",
    ]
    [line] = endpoint_lines([late], 10.0, at=75.0, width=100)  # due: never a negative wait
    assert line.plain.endswith("down since 45.0 s (for 20.00 s) · next probe in 0.0 s")


def test_many_endpoints_are_summed_up_and_a_long_one_is_cut_before_its_state() -> None:
    endpoints = [EndpointStatus(f"h{i}.example.org:443", up=i >= 4, since=20.0) for i in range(6)]
    lines = [line.plain for line in endpoint_lines(endpoints, 10.0, at=75.0)]
    assert len(lines) == 4
    assert lines[-1] == "… and 3 more endpoints: 1 down"
    name = "very-long-host-name." * 5 + "example.org:443 via socks5://proxy:1080"
    (line,) = endpoint_lines([EndpointStatus(name, up=False, since=40.0)], 10.0, 75.0, width=76)
    assert len(line.plain) <= 76
    assert line.plain.endswith("down since 30.0 s (for 35.00 s)")


def test_the_dashboard_shows_the_endpoint_it_is_given() -> None:
    down = EndpointStatus("127.0.0.1:8765", up=False, since=40.0, probing=True, members=300)
    state = "down since 30.0 s (for 30.00 s), probing"
    for width in (150, 80):
        text = body(render(panel(stats(members=300), endpoints=[down]), width=width, height=24))
        [line] = [line for line in text if line.startswith("endpoint ")]
        assert line.startswith(f"endpoint 127.0.0.1:8765  {state} · 300 ")
    assert line.endswith("…")  # at 80 columns the count of members is cut first
