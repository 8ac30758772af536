"""The spec's invariants, checked by Hypothesis, and proof that they catch planted bugs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from fsm_live.core.lifecycle import Lifecycle
from fsm_live.errors import SpecError
from fsm_live.spec import Spec
from fsm_live.testing import spec_state_machine

SPECS = Path(__file__).resolve().parent.parent / "specs"
#: The slow run's budget (``pytest -m slow``); the default run tries a sixth of it.
THOROUGH = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CI = settings(THOROUGH, max_examples=50)
# Planted bugs only need finding, not shrinking.
PLANTED = settings(
    max_examples=500,
    stateful_step_count=30,
    deadline=None,
    database=None,
    derandomize=True,
    report_multiple_bugs=False,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)

TestConnectionSpec = spec_state_machine(SPECS / "connection.yaml").TestCase
TestConnectionSpec.settings = CI

EXAMPLE = Spec.from_mapping(
    {
        "name": "job_runner",
        "initial": "QUEUED",
        "states": {
            "QUEUED": {"log": "DEBUG"},
            "RUNNING": {"tasks": ["heartbeat"], "timers": {"heartbeat_timeout": "stall"}},
            "STALLED": {"log": "WARNING", "timers": {"backoff": ["abandon", "resume"]}},
            "DONE": {"final": True},
            "ABANDONED": {"final": True, "log": "ERROR"},
        },
        "transitions": [
            {"trigger": "run", "source": "QUEUED", "dest": "RUNNING"},
            {"trigger": "stall", "source": "RUNNING", "dest": "STALLED"},
            {"trigger": "resume", "source": "STALLED", "dest": "RUNNING"},
            {
                "trigger": "abandon",
                "source": "STALLED",
                "dest": "ABANDONED",
                "conditions": ["exhausted"],
            },
            {"trigger": "finish", "source": "RUNNING", "dest": "DONE"},
            {"trigger": "cancel", "source": ["QUEUED", "RUNNING", "STALLED"], "dest": "ABANDONED"},
        ],
    }
)

TestJobRunnerSpec = spec_state_machine(EXAMPLE).TestCase
TestJobRunnerSpec.settings = CI

TestTrafficLightSpec = spec_state_machine(SPECS / "examples" / "traffic_light.yaml").TestCase
TestTrafficLightSpec.settings = CI


@pytest.mark.slow
@pytest.mark.timeout(600)
class TestConnectionSpecThoroughly(TestConnectionSpec):
    settings = THOROUGH


@pytest.mark.slow
@pytest.mark.timeout(600)
class TestJobRunnerSpecThoroughly(TestJobRunnerSpec):
    settings = THOROUGH


class ForgetsToCancelHeartbeat(Lifecycle):
    """Planted bug: leaving a state leaves its heartbeat task running."""

    def _on_exit(self, event_data: Any) -> None:
        super()._on_exit(event_data)
        self._effects[:] = [e for e in self._effects if getattr(e, "task", None) != "heartbeat"]


class ResetsFailuresOnOpen(Lifecycle):
    """Planted bug: the failure count resets as soon as a connection opens (no stability)."""

    def _on_enter(self, event_data: Any) -> None:
        if self.machine.states[self.state].success:
            self.failures = 0
        super()._on_enter(event_data)


class BackoffIgnoresCap(Lifecycle):
    """Planted bug: the backoff delay is ten times what the policy allows."""

    def timer_duration(self, name: str, now: float) -> float:
        duration = super().timer_duration(name, now)
        return duration * 10 + 1 if name == "backoff" else duration


class LeavesFinalState(Lifecycle):
    """Planted bug: closing re-arms a timer in the final state (it stops absorbing)."""

    def _on_enter(self, event_data: Any) -> None:
        super()._on_enter(event_data)
        if self.machine.states[self.state].final:
            self.timers["backoff"] = event_data.kwargs["now"]


@pytest.mark.parametrize(
    ("planted", "caught_by"),
    [
        (ForgetsToCancelHeartbeat, "heartbeat started twice|running .*'heartbeat'"),
        (ResetsFailuresOnOpen, "without stability"),
        (BackoffIgnoresCap, "backoff .* outside|exhausted but waits"),
        (LeavesFinalState, "armed in CLOSED|final state CLOSED produced"),
    ],
)
def test_planted_bug_is_caught(planted: type[Lifecycle], caught_by: str) -> None:
    machine = spec_state_machine(SPECS / "connection.yaml", lifecycle_factory=planted)
    with pytest.raises(AssertionError, match=caught_by):
        run_state_machine_as_test(machine, settings=PLANTED)


def test_a_spec_with_its_own_tasks_and_timers_runs_with_its_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SUBSCRIBING example declares a task and a timer of its own: unbound, the
    harness says which; bound by its registry, the invariants hold."""
    monkeypatch.syspath_prepend(str(SPECS / "examples"))
    import registries  # type: ignore[import-not-found]

    spec = SPECS / "examples" / "subscribing.yaml"
    with pytest.raises(SpecError, match=r"subscribing\.yaml:\d+: tasks\.subscribe"):
        spec_state_machine(spec)
    machine = spec_state_machine(spec, registry=registries.subscribing)
    run_state_machine_as_test(machine, settings=settings(CI, max_examples=20))
