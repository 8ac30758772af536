"""Backoff policies: bounds, jitter, the seed's by-class policy, and names."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_live.core.backoff import ByErrorClass, ExponentialJitter, FixedDelay, backoff_policy
from fsm_live.errors import ConfigError


def test_exponential_ceiling_doubles_to_the_cap() -> None:
    policy = ExponentialJitter(initial=1, maximum=60, factor=2)
    ceilings = [policy.bounds(n, "network")[1] for n in range(1, 10)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert policy.bounds(0, "network") == (0, 1)  # after a reset: the first step
    assert policy.bounds(10_000, "network") == (0, 60)  # no overflow


def test_full_jitter_spans_the_interval_even_at_the_cap() -> None:
    policy = ExponentialJitter(initial=1, maximum=10)
    rng = random.Random(7)
    delays = [policy.delay(20, "lost", rng.random) for _ in range(2000)]
    assert min(delays) < 0.5
    assert max(delays) > 9.5
    assert all(0 <= d <= 10 for d in delays)


def test_jitter_uses_the_injected_source() -> None:
    policy = ExponentialJitter(initial=2, maximum=100, floor=0.5)
    assert policy.delay(3, "network", lambda: 0.0) == 0.5
    assert policy.delay(3, "network", lambda: 0.5) == 0.5 + (8 - 0.5) / 2


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0, max_value=0.999999))
def test_exponential_delay_within_bounds(failures: int, draw: float) -> None:
    policy = ExponentialJitter(initial=0.5, maximum=30, factor=3, floor=0.1)
    low, high = policy.bounds(failures, "network")
    assert low <= policy.delay(failures, "network", lambda: draw) <= high


def test_seed_policy_by_error_class() -> None:
    policy = ByErrorClass()
    assert [policy.delay(n, "lost", random.random) for n in (1, 2, 5, 6)] == [3, 6, 15, 15]
    assert [policy.delay(n, "network", random.random) for n in (1, 3, 6, 9)] == [10, 30, 60, 60]
    assert [policy.delay(n, "server", random.random) for n in (1, 4, 6, 7)] == [5, 20, 30, 30]
    assert policy.bounds(2, "planned") == (6, 6)


def test_fixed_delay() -> None:
    assert FixedDelay(5).delay(9, "network", random.random) == 5
    assert FixedDelay(5).bounds(1, "lost") == (5, 5)


def test_policies_by_name() -> None:
    assert backoff_policy("exponential", initial=2) == ExponentialJitter(initial=2)
    assert backoff_policy("by_error_class") == ByErrorClass()
    assert backoff_policy("fixed", seconds=1) == FixedDelay(1)
    with pytest.raises(ConfigError, match="unknown policy 'linear'"):
        backoff_policy("linear")
    # The field is the parameter, so Config.load can say where it was set.
    with pytest.raises(ConfigError) as caught:
        backoff_policy("fixed", initial=1)
    assert caught.value.field == "initial"
    assert str(caught.value) == (
        "initial: not a parameter of the 'fixed' policy (its parameters: seconds)"
    )
    with pytest.raises(
        ConfigError,
        match=r"^seconds: not a parameter of the 'exponential' "
        r"policy \(its parameters: initial, maximum, factor, "
        r"floor\)$",
    ):
        backoff_policy("exponential", initial=2, seconds=1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": 0}, "initial"),
        ({"maximum": -1}, "maximum"),
        ({"factor": 0.5}, "factor"),
        ({"initial": 10, "maximum": 5}, "maximum"),
        ({"floor": 2, "initial": 1}, "floor"),
    ],
)
def test_exponential_validation(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ExponentialJitter(**kwargs)
    assert caught.value.field == field
