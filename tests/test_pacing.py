"""ReconnectPacer: bounded attempts per window, never earlier, bounded memory."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_live import Config, FixedDelay
from fsm_live.connection import default_machine
from fsm_live.core.classify import Failure
from fsm_live.core.events import LinkFailed, Opened, Start
from fsm_live.core.lifecycle import Lifecycle
from fsm_live.core.pacing import ReconnectPacer


@pytest.mark.parametrize("rate", [0, -1, math.inf, math.nan])
def test_rate_must_be_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate: must be a positive number"):
        ReconnectPacer(rate)


def test_bins_hold_rate_times_width() -> None:
    assert (ReconnectPacer(400).bin_width, ReconnectPacer(400).capacity) == (0.01, 4)
    assert (ReconnectPacer(2).bin_width, ReconnectPacer(2).capacity) == (0.5, 1)


@pytest.mark.parametrize("rate", [0.5, 1, 7, 99, 150, 200, 250, 333, 1000, 12_345])
def test_the_rate_is_the_rate_asked_for(rate: float) -> None:
    """Bins of about 10 ms whatever the rate (150 a second is not 100 in bins of one)."""
    pacer = ReconnectPacer(rate)
    assert pacer.capacity / pacer.bin_width == pytest.approx(rate)
    assert pacer.bin_width <= 0.0151 or pacer.capacity == 1
    slots = [pacer.reserve(0.0, now=0.0) for _ in range(3 * pacer.capacity + 1)]
    assert slots[-1] == pytest.approx(3 * pacer.bin_width)  # the fourth bin's first


def test_a_lone_connection_never_waits() -> None:
    pacer = ReconnectPacer(10)
    deadlines = [0.3, 1.7, 2.05, 9.99, 10.0]
    assert [pacer.reserve(d, now=d - 0.2) for d in deadlines] == deadlines


def test_a_thousand_simultaneous_retries_are_spread_at_the_rate() -> None:
    pacer = ReconnectPacer(400)
    times = [pacer.reserve(1.0, now=0.0) for _ in range(1000)]
    assert times == sorted(times)
    assert times[0] == 1.0
    assert times[-1] == pytest.approx(1.0 + 999 // 4 * 0.01)
    busiest = max(sum(1 for t in times if start <= t < start + 0.1) for start in times)
    assert busiest <= 400 * (0.1 + pacer.bin_width)  # 44: 4.4% of 1,000


@given(
    st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5)), max_size=300),
    st.sampled_from([3.0, 50.0, 400.0]),
)
def test_never_earlier_and_never_over_capacity(
    requests: list[tuple[float, float]], rate: float
) -> None:
    pacer = ReconnectPacer(rate)
    now = 0.0
    bins = []
    for at, delay in requests:
        now = max(now, at)  # time only moves forward
        deadline = now + delay
        slot = pacer.reserve(deadline, now)
        assert slot >= deadline
        # A deadline kept is in its own bin; a moved one is the start of a later bin
        # (index * width, which may round a hair either way: hence round()).
        bins.append(pacer._bin(deadline) if slot == deadline else round(slot / pacer.bin_width))
    per_bin = [len(list(group)) for _, group in itertools.groupby(sorted(bins))]
    assert max(per_bin, default=0) <= pacer.capacity


def test_a_hundred_thousand_told_at_once_find_their_slots_without_a_scan() -> None:
    """A fleet's members told at once that their endpoint is back all reserve at the
    same moment.  Scanning bin by bin, the k-th would pass k / capacity full bins:
    100,000 of them, 2.5 billion steps (hours, past this test's timeout); full bins
    link to the next, so it is about one step each."""
    pacer = ReconnectPacer(200)
    slots = [pacer.reserve(10.0, now=10.0) for _ in range(100_000)]
    assert slots == sorted(slots)
    assert slots[-1] == pytest.approx(10.0 + (100_000 // pacer.capacity - 1) * pacer.bin_width)
    per_bin = [len(list(group)) for _, group in itertools.groupby(slots)]
    assert max(per_bin) == pacer.capacity


def test_bins_in_the_past_are_forgotten() -> None:
    pacer = ReconnectPacer(100)
    for n in range(10_000):
        now = n * 0.05
        pacer.reserve(now + 0.5, now)
    assert pacer.bins_held <= 64 + 60


def test_an_attempt_goes_while_its_bin_has_room_else_takes_a_new_slot() -> None:
    pacer = ReconnectPacer(1)  # bins of 1 s, one attempt each
    assert [pacer.reserve(5.0, now=5.0) for _ in range(3)] == [5.0, 6.0, 7.0]
    assert pacer.due(now=5.2) is None  # on time: it goes
    # The loop stalled to 7.5 s: of the attempts due then, one goes, one a second.
    assert pacer.due(now=7.5) is None
    assert pacer.due(now=7.5) == 8.0
    assert pacer.due(now=7.6) == 9.0
    assert pacer.due(now=9.0) is None  # the new slots are kept like any other


def made_at(pacer: ReconnectPacer, due: list[float], late: float = 0.0) -> list[float]:
    """When attempts first due at ``due`` are made, each asking ``pacer.due`` as its
    time comes, every timer firing ``late`` seconds after its time."""
    made: list[float] = []
    pending = sorted((at + late, n) for n, at in enumerate(due))
    while pending:
        at, n = pending.pop(0)
        later = pacer.due(now=at)
        if later is None:
            made.append(at)
        else:
            pending.append((later + late, n))
            pending.sort()
    return made


def test_a_stall_never_lets_more_than_the_capacity_go_in_a_bin() -> None:
    """100 attempts reserved at 10 a second, then the loop wakes 3 s late: the 30
    slots that passed do not go together; every bin sees its capacity at most, and
    all go, in the time the rate allows plus the stall."""
    pacer = ReconnectPacer(10)
    slots = [pacer.reserve(0.0, now=0.0) for _ in range(100)]
    made = made_at(pacer, [max(slot, 3.0) for slot in slots])
    per_bin = [len(list(group)) for _, group in itertools.groupby(sorted(made))]
    assert max(per_bin) <= pacer.capacity
    assert len(made) == 100
    assert max(made) <= 3.0 + 100 / 10


def test_a_loop_late_all_the_time_is_not_a_stall() -> None:
    """Every timer fires 25 ms late (a loop busy with thousands of connections): the
    attempts go late, at the rate, none is put off for ever."""
    pacer = ReconnectPacer(200)  # bins of 10 ms, two attempts each
    slots = [pacer.reserve(0.0, now=0.0) for _ in range(1000)]
    made = made_at(pacer, slots, late=0.025)
    assert len(made) == 1000
    assert max(made) <= 1000 / 200 + 0.05
    busiest = max(sum(1 for t in made if start <= t < start + 1.0) for start in made)
    assert busiest <= 200 * (1 + pacer.bin_width)


def test_lifecycles_sharing_a_pacer_take_turns() -> None:
    pacer = ReconnectPacer(1)  # one attempt per second
    config = Config(backoff=FixedDelay(2.0))
    lifecycles = [Lifecycle(default_machine(), config, pacer=pacer) for _ in range(3)]
    for lifecycle in lifecycles:
        lifecycle.handle(Start(0.0))
        lifecycle.handle(Opened(0.0, lifecycle.generation))
        lifecycle.handle(
            LinkFailed(5.0, lifecycle.generation, Failure(error_class="network", reason="reset"))
        )
    assert [lc.timers["backoff"] for lc in lifecycles] == [7.0, 8.0, 9.0]


def test_attempts_due_together_after_a_stall_take_new_slots() -> None:
    """The loop stalled 1.5 s past the last of three slots (a garbage collection, say):
    the three attempts do not go at once, each takes the next free slot, and a slot
    taken so is paced again if the loop stalls again."""
    pacer = ReconnectPacer(1)  # one attempt per second
    config = Config(backoff=FixedDelay(2.0))
    lifecycles = [Lifecycle(default_machine(), config, pacer=pacer) for _ in range(3)]
    for lifecycle in lifecycles:
        lifecycle.handle(Start(0.0))
        lifecycle.handle(Opened(0.0, lifecycle.generation))
        lifecycle.handle(
            LinkFailed(5.0, lifecycle.generation, Failure(error_class="network", reason="reset"))
        )
    assert [lc.timers["backoff"] for lc in lifecycles] == [7.0, 8.0, 9.0]
    for lifecycle in lifecycles:  # the loop comes back at 10.5 s
        lifecycle.handle_timer(10.5)
    # The first goes in the bin at 10 s; the others take 11 and 12 s.
    assert [lc.state for lc in lifecycles] == ["CONNECTING", "RECONNECTING", "RECONNECTING"]
    assert [lc.timers.get("backoff") for lc in lifecycles[1:]] == [11.0, 12.0]
    for lifecycle in lifecycles[1:]:  # stalled again, to 20 s: one goes, one waits
        lifecycle.handle_timer(20.0)
    assert [lc.state for lc in lifecycles] == ["CONNECTING", "CONNECTING", "RECONNECTING"]
    assert lifecycles[2].timers["backoff"] == 21.0
    lifecycles[2].handle_timer(21.0)
    assert lifecycles[2].state == "CONNECTING"


def test_a_late_attempt_goes_when_no_other_went_in_its_bin() -> None:
    """Lateness alone moves nothing: only attempts made together past the rate."""
    pacer = ReconnectPacer(1)
    lifecycle = Lifecycle(default_machine(), Config(backoff=FixedDelay(2.0)), pacer=pacer)
    lifecycle.handle(Start(0.0))
    lifecycle.handle(
        LinkFailed(5.0, lifecycle.generation, Failure(error_class="network", reason="reset"))
    )
    lifecycle.handle_timer(7.0 + 30 * pacer.bin_width)
    assert lifecycle.state == "CONNECTING"


def test_giving_up_is_not_paced() -> None:
    pacer = ReconnectPacer(1)
    pacer.reserve(5.0, now=5.0)  # the bin at 5 s is full
    lifecycle = Lifecycle(default_machine(), Config(max_failures=1), pacer=pacer)
    lifecycle.handle(Start(0.0))
    lifecycle.handle(
        LinkFailed(5.0, lifecycle.generation, Failure(error_class="network", reason="refused"))
    )
    assert lifecycle.timers["backoff"] == 5.0  # give_up at once
