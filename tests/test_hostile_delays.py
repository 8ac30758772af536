"""No hot loop from a tiny delay (docs/configuration.md, kind 7 of issue 17).

A retry delay of zero (``FixedDelay(0)``, or ``ExponentialJitter`` with initial =
maximum = 1e-9) against a server answering 500 at once was 3,779 attempts in 5 s,
a core busy, 55,000 log lines; ``failed_retry_delay`` defaulted to that cap too.
Now: a delay setting below its minimum is refused, naming it (``MIN_RETRY_DELAY``
for backoff ceilings and ``planned_reconnect_delay``, ``MIN_FAILED_RETRY_DELAY``
for ``failed_retry_delay``), and the default ``failed_retry_delay`` (the backoff's
cap) is floored at ``MIN_FAILED_RETRY_DELAY``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from fsm_live import Config, ConfigError, ExponentialJitter, FixedDelay, connect
from fsm_live.config import MIN_FAILED_RETRY_DELAY
from fsm_live.core.backoff import MIN_RETRY_DELAY, ByErrorClass, RandomSource, backoff_policy
from fsm_live.core.effects import TransitionRecord
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.timeout(60)
URL = "ws://busy.test/"

Figure = Callable[[str, object], None]


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """Record a measured figure as a user property of the test's report."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))

    return record


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: backoff_policy("fixed", seconds=0), "seconds"),
        (lambda: FixedDelay(0.001), "seconds"),
        (lambda: ExponentialJitter(initial=1e-9, maximum=1e-9), "maximum"),
        (lambda: ExponentialJitter(initial=1e-9, maximum=60, factor=1), "initial"),
        (lambda: ByErrorClass(abrupt=(0.0, 0.0)), "abrupt"),
        (lambda: ByErrorClass(network=(10.0, 0.001)), "network"),
        (lambda: Config(planned_reconnect_delay=0.001), "planned_reconnect_delay"),
    ],
    ids=["fixed-0", "fixed-1ms", "exponential-1e-9", "factor-1", "abrupt-0", "cap-1ms", "planned"],
)
def test_7_a_delay_below_the_minimum_is_refused(make: Callable[[], object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()
    assert caught.value.field == field
    assert f"must be at least {MIN_RETRY_DELAY} s (shorter delays retry in a hot loop)" in str(
        caught.value
    )


def test_7_a_failed_retry_delay_below_one_second_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^failed_retry_delay: must be at least 1 s"):
        Config(failed_retry_delay=1e-9)
    assert Config(failed_retry_delay=MIN_FAILED_RETRY_DELAY).failed_retry_after == 1.0


def test_7_the_default_failed_retry_delay_is_floored() -> None:
    """Unset, ``failed_retry_delay`` is the backoff's cap, but never under 1 s."""
    fast = Config(backoff=ExponentialJitter(initial=MIN_RETRY_DELAY, maximum=MIN_RETRY_DELAY))
    assert fast.failed_retry_after == MIN_FAILED_RETRY_DELAY
    assert Config().failed_retry_after == 60.0


class _Zero:
    """A user's own policy that never waits."""

    def delay(self, failures: int, error_class: str, random: RandomSource) -> float:
        return 0.0

    def bounds(self, failures: int, error_class: str) -> tuple[float, float]:
        return 0.0, 0.0


def test_7_a_policy_of_the_users_own_that_never_waits_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^backoff: must be at least 0.01 s"):
        Config(backoff=_Zero())


def test_7_where_a_tiny_delay_was_set_is_named() -> None:
    env = {"FSM_LIVE_BACKOFF_POLICY": "fixed", "FSM_LIVE_BACKOFF_SECONDS": "0"}
    with pytest.raises(ConfigError) as caught:
        Config.load(env=env)
    assert str(caught.value).startswith("FSM_LIVE_BACKOFF_SECONDS (seconds): must be at least")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSM_LIVE_")}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "fsm_live", "connect", "ws://127.0.0.1:9/"),
            *("--backoff-initial", "0.001", "--backoff-max", "0.005"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "fsm-live connect: error: --backoff-max: must be at least 0.01 s "
        "(shorter delays retry in a hot loop), got 0.005\n"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="mock")]
)
async def test_7_the_smallest_delays_allowed_make_no_hot_loop(
    anyio_backend: Any, figure: Figure, caplog: pytest.LogCaptureFixture
) -> None:
    """Bound: against a server answering 500 at once, with the smallest delays
    allowed (backoff ceiling 0.01 s), attempts come in streaks of ``max_failures``
    (5) then wait ``failed_retry_delay`` (at least 1 s, jittered to [0.5, 1]): at
    most 60 attempts in 5 s of (virtual) time, and as many WARNING lines.  Today
    the same 5 s would be thousands of attempts (the test stops at 500)."""
    network = MemoryNetwork()
    network.reject(URL, 500)
    config = Config(backoff=ExponentialJitter(initial=MIN_RETRY_DELAY, maximum=MIN_RETRY_DELAY))
    caplog.set_level(logging.WARNING)
    conn = connect(URL, transport=MemoryTransport(network), config=config)
    spinning = anyio.Event()  # 500 attempts: today's loop, stopped there

    def count(record: TransitionRecord) -> None:
        if network.attempts(URL) >= 500:
            spinning.set()

    conn.on_transition(count)
    async with conn:
        with anyio.move_on_after(5):
            await spinning.wait()
    attempts = network.attempts(URL)
    figure("attempts_in_5s", attempts)
    figure("log_lines", len(caplog.records))
    assert attempts <= 60
    assert len(caplog.records) <= 2 * 60
