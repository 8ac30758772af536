"""check_implementation at its default settings against one machine implemented three
ways (a plain class, python-statemachine, transitions), each with the bugs of issue 19
planted (tests/planted.py): every bug is caught, with a report naming the spec's
file, row and line; the correct implementations pass.  ``bench/planted_bugs.py``
times the same checks."""

from __future__ import annotations

import pytest
from planted import BUGS, STYLES, check

from fsm_live.testing import Mismatch

pytestmark = pytest.mark.timeout(120)

#: What each report says (any style): the kind of comparison that caught it.
CAUGHT_BY = {
    "an action called twice": r"the implementation ran \[.*'take_coin'.*'take_coin'.*\]; "
    r"the spec takes transitions\.0 \(IDLE -> PAYING\) for coin\(amount=\d\), at "
    r"kiosk\.yaml:21 and runs \['take_coin', 'light_on'\]",
    "a timer not cancelled on leaving its state": r"in IDLE, the implementation's timer "
    r"idle_timeout is still armed: the spec arms none there \(states\.IDLE, at kiosk\.yaml:14\)",
    "a guard with the wrong boundary": r"the spec takes transitions\.1 \(PAYING -> IDLE "
    r"\[paid_enough\]\) for coin\(amount=\d\) with paid_enough=True, at kiosk\.yaml:22; "
    r"the implementation is in PAYING",
    "a duplicated side effect": r"the implementation's object reads \(\d, 2, False\); the "
    r"spec run on the model with the registry's actions reads \(\d, 1, False\)",
    "a wrong destination": r"the spec takes transitions\.1 \(PAYING -> IDLE \[paid_enough\]\)"
    r".*at kiosk\.yaml:22; the implementation is in PAYING",
    "a missing edge": r"the implementation (refused refund in PAYING|raised .* when its "
    r"timer idle_timeout expired)",
    "a timer armed for the wrong time": r"entering PAYING, the implementation armed "
    r"idle_timeout for 60 s; the registry's idle_timeout\(subject\) says 30 s "
    r"\(states\.PAYING, at kiosk\.yaml:15\)",
}


@pytest.mark.parametrize("style", STYLES)
def test_the_correct_implementation_passes(style: str) -> None:
    pytest.importorskip("statemachine")
    check(style, None)


@pytest.mark.parametrize("bug", BUGS)
@pytest.mark.parametrize("style", STYLES)
def test_every_planted_bug_is_caught_at_default_settings(style: str, bug: str) -> None:
    pytest.importorskip("statemachine")
    with pytest.raises(Mismatch, match=CAUGHT_BY[bug]) as caught:
        check(style, bug)
    report = str(caught.value)
    assert report.startswith("after [")
    assert "\n" not in report
    assert caught.value.__cause__ is None  # trimmed: no chain of Hypothesis internals
    assert caught.value.__suppress_context__


@pytest.mark.parametrize("style", STYLES)
def test_timers_expire_on_the_virtual_clock(style: str) -> None:
    pytest.importorskip("statemachine")
    from planted import IMPLEMENTATIONS, REGISTRY, SPEC, KioskData

    from fsm_live.testing import Step, run_steps

    visited = run_steps(
        SPEC,
        IMPLEMENTATIONS[style](None)(),
        [Step("coin", {"amount": 1}), Step("idle_timeout", elapse=True)],
        registry=REGISTRY,
        model=KioskData,
    )
    assert visited == ["IDLE", "PAYING", "IDLE"]
    assert repr(Step("idle_timeout", elapse=True)) == "idle_timeout elapses"
