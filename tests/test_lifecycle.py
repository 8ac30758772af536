"""The sans-I/O lifecycle: explicit ``now`` values, no event loop."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

import fsm_live.core
from fsm_live.config import Config
from fsm_live.core.backoff import FixedDelay
from fsm_live.core.classify import Failure
from fsm_live.core.effects import (
    CancelTask,
    CancelTimer,
    Effect,
    Emit,
    Notice,
    ReleaseLink,
    ScheduleTimer,
    SendHeartbeat,
    StartTask,
)
from fsm_live.core.endpoint import Endpoint
from fsm_live.core.events import (
    Close,
    CredentialsRefreshed,
    EscalationFinished,
    HeartbeatAcked,
    Inbound,
    LinkClosed,
    LinkFailed,
    MessageReceived,
    Opened,
    ReadingPaused,
    ReadingResumed,
    Reset,
    Rotate,
    Start,
    Tick,
)
from fsm_live.core.lifecycle import Lifecycle, LifecycleMachine
from fsm_live.errors import SpecError, TransitionRefused
from fsm_live.spec import Spec

MACHINE = LifecycleMachine(Spec.default())
CONNECTED_TASKS = ("reader", "heartbeat", "token_refresh", "cookie_refresh", "cleanup", "flush")


def new(config: Config | None = None, *, draw: float = 0.5, refresh: bool = False) -> Lifecycle:
    return Lifecycle(
        MACHINE, config or Config(), random=lambda: draw, can_refresh_credentials=refresh
    )


def failure(**facts: object) -> Failure:
    return MACHINE.classifier.classify(reason="test", **facts)  # type: ignore[arg-type]


def connected(lifecycle: Lifecycle, now: float = 0.0) -> Lifecycle:
    lifecycle.handle(Start(now))
    lifecycle.handle(Opened(now, lifecycle.generation))
    assert lifecycle.state == "CONNECTED"
    return lifecycle


def fail(lifecycle: Lifecycle, now: float, **facts: object) -> list[Effect]:
    return lifecycle.handle(LinkFailed(now, lifecycle.generation, failure(**facts)))


def records(effects: Iterable[Effect]) -> list[tuple[str, str, str]]:
    return [
        (e.record.source, e.record.trigger, e.record.dest) for e in effects if isinstance(e, Emit)
    ]


def backoff_delay(lifecycle: Lifecycle, now: float) -> float:
    assert lifecycle.state == "RECONNECTING"
    return lifecycle.timers["backoff"] - now


def test_start_records_effects_in_order() -> None:
    lifecycle = new()
    effects = lifecycle.handle(Start(100.0))
    assert effects == [
        StartTask("dial", 1, may_escalate=True),
        ScheduleTimer("open_timeout", 110.0),
        Emit(effects[-1].record),  # type: ignore[union-attr]
    ]
    assert records(effects) == [("DISCONNECTED", "start", "CONNECTING")]
    assert lifecycle.next_deadline() == 110.0


def test_opened_cancels_dial_then_starts_connected_tasks() -> None:
    lifecycle = new()
    lifecycle.handle(Start(0.0))
    effects = lifecycle.handle(Opened(1.0, 1))
    assert effects[:2] == [CancelTask("dial", 1), CancelTimer("open_timeout")]
    assert [e.task for e in effects if isinstance(e, StartTask)] == list(CONNECTED_TASKS)
    assert {e.generation for e in effects if isinstance(e, StartTask)} == {2}
    assert lifecycle.timers == {"heartbeat_timeout": 31.0, "stability": 16.0}


def test_open_timeout_counts_a_network_failure() -> None:
    lifecycle = new(Config(backoff=FixedDelay(2)))
    lifecycle.handle(Start(0.0))
    effects = lifecycle.handle(Tick(10.0))
    assert records(effects) == [("CONNECTING", "connect_failed", "RECONNECTING")]
    assert lifecycle.failures == 1
    assert lifecycle.last_failure is not None
    assert lifecycle.last_failure.error_class == "network"
    assert lifecycle.last_failure.kind == "timeout"
    assert backoff_delay(lifecycle, 10.0) == 2
    assert records(lifecycle.handle(Tick(11.9))) == []
    assert records(lifecycle.handle(Tick(12.0))) == [("RECONNECTING", "retry", "CONNECTING")]


def test_heartbeat_timeout_measured_from_last_inbound() -> None:
    lifecycle = connected(new())
    lifecycle.handle(Inbound(20.0, lifecycle.generation))
    assert lifecycle.deadlines() == {
        "stability": 15.0,
        "heartbeat_timeout": 50.0,
        "heartbeat": 15.0,
    }
    lifecycle.handle(Tick(15.0))
    assert lifecycle.deadlines() == {"heartbeat_timeout": 50.0, "heartbeat": 30.0}
    assert records(lifecycle.handle(Tick(49.999))) == []
    effects = lifecycle.handle(Tick(50.0))
    assert records(effects) == [("CONNECTED", "lost", "RECONNECTING")]
    assert lifecycle.last_failure is not None
    assert lifecycle.last_failure.kind == "heartbeat_timeout"
    assert [e.task for e in effects if isinstance(e, CancelTask)] == list(CONNECTED_TASKS)


def test_failures_reset_only_after_stability() -> None:
    lifecycle = new(Config(max_failures=10))
    now = 0.0
    lifecycle.handle(Start(now))
    for expected in (1, 2, 3):
        lifecycle.handle(Opened(now, lifecycle.generation))
        now += 1.0  # closed after 1 s: not stable
        fail(lifecycle, now, close_code=1000)
        assert lifecycle.failures == expected
        now = lifecycle.timers["backoff"]
        lifecycle.handle(Tick(now))
    lifecycle.handle(Opened(now, lifecycle.generation))
    lifecycle.handle(Tick(now + 14.9))
    assert lifecycle.failures == 3
    lifecycle.handle(Tick(now + 15.0))
    assert (lifecycle.failures, lifecycle.stable) == (0, True)


def test_accept_then_close_server_sees_growing_gaps() -> None:
    lifecycle = new(Config(max_failures=50), draw=1.0)
    now = 0.0
    lifecycle.handle(Start(now))
    gaps = []
    for _ in range(6):
        lifecycle.handle(Opened(now, lifecycle.generation))
        fail(lifecycle, now, close_code=1000)
        gaps.append(backoff_delay(lifecycle, now))
        now = lifecycle.timers["backoff"]
        lifecycle.handle(Tick(now))
    assert gaps == [1, 2, 4, 8, 16, 32]


def test_first_heartbeat_ack_makes_the_connection_stable() -> None:
    lifecycle = new()
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, kind="refused")
    lifecycle.handle(Tick(lifecycle.timers["backoff"]))
    lifecycle.handle(Opened(5.0, lifecycle.generation))
    assert lifecycle.failures == 1
    assert lifecycle.awaits_proof
    lifecycle.handle(HeartbeatAcked(6.0, lifecycle.generation, rtt=0.01))
    assert (lifecycle.failures, lifecycle.stable) == (0, True)
    assert "stability" not in lifecycle.timers
    assert not lifecycle.awaits_proof
    assert lifecycle.timers["heartbeat_timeout"] == 36.0


def test_planned_close_when_stable_is_no_failure_and_short() -> None:
    lifecycle = connected(new(draw=0.999))
    lifecycle.handle(Tick(20.0))  # stable
    fail(lifecycle, 25.0, close_code=1012)
    assert lifecycle.failures == 0
    assert 0 <= backoff_delay(lifecycle, 25.0) <= Config().planned_reconnect_delay


def test_planned_close_before_stable_counts() -> None:
    lifecycle = connected(new(draw=0.999))
    fail(lifecycle, 2.0, close_code=1001)
    assert lifecycle.failures == 1
    assert backoff_delay(lifecycle, 2.0) == pytest.approx(0.999)


def test_retry_after_is_honoured_and_capped() -> None:
    lifecycle = new(Config(retry_after_cap=60))
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, http_status=503, retry_after=7.0)
    assert 7.0 <= backoff_delay(lifecycle, 1.0) <= 7.0 + 1
    lifecycle.handle(Tick(lifecycle.timers["backoff"]))
    now = lifecycle.timers["open_timeout"] - 5
    fail(lifecycle, now, http_status=503, retry_after=3600.0)
    assert backoff_delay(lifecycle, now) == 60.0


def test_throttled_waits_at_least_its_min_delay() -> None:
    lifecycle = new(draw=0.0)
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, http_status=429)
    assert backoff_delay(lifecycle, 1.0) == 30.0  # min_delay of class throttled


def test_max_failures_then_failed_then_escalation_resets() -> None:
    lifecycle = new(Config(max_failures=3, backoff=FixedDelay(1)))
    now = 0.0
    lifecycle.handle(Start(now))
    taken = []
    for _ in range(3):
        now += 1
        taken += records(fail(lifecycle, now, kind="refused"))
        taken += records(lifecycle.handle(Tick(lifecycle.timers["backoff"])))
    assert taken[-2:] == [
        ("CONNECTING", "connect_failed", "RECONNECTING"),
        ("RECONNECTING", "give_up", "FAILED"),
    ]
    assert lifecycle.state == "FAILED"
    assert lifecycle.exhausted
    assert lifecycle.may_escalate
    generation = lifecycle.generation
    assert lifecycle.handle(EscalationFinished(now, generation, ok=False)) == []
    assert lifecycle.state == "FAILED"
    assert not lifecycle.may_escalate
    effects = lifecycle.handle(EscalationFinished(now, generation, ok=True))
    assert records(effects) == [("FAILED", "reset", "RECONNECTING")]
    assert lifecycle.failures == 0
    assert backoff_delay(lifecycle, now) == 1


def give_up(lifecycle: Lifecycle, now: float = 0.0) -> float:
    """Drive ``lifecycle`` from DISCONNECTED to FAILED by refused dials; return the time."""
    lifecycle.handle(Start(now))
    while lifecycle.state != "FAILED":
        now += 1
        fail(lifecycle, now, kind="refused")
        now = lifecycle.timers["backoff"]
        lifecycle.handle(Tick(now))
    return now


@pytest.mark.parametrize(("max_failures", "said"), [(1, "1 failure"), (3, "3 failures")])
def test_giving_up_says_how_many_failures(max_failures: int, said: str) -> None:
    lifecycle = new(Config(max_failures=max_failures, backoff=FixedDelay(1)))
    lifecycle.handle(Start(0.0))
    now = 0.0
    while True:
        now += 1
        fail(lifecycle, now, kind="refused")
        now = lifecycle.timers["backoff"]
        effects = lifecycle.handle(Tick(now))
        if lifecycle.state == "FAILED":
            break
    reason = effects[-1].record.reason  # type: ignore[union-attr]
    assert reason == f"{said} in a row (max_failures {max_failures})"


def test_failed_after_retryable_failures_retries_by_itself_after_failed_retry_delay() -> None:
    lifecycle = new(Config(max_failures=3, backoff=FixedDelay(1), failed_retry_delay=40), draw=1.0)
    now = give_up(lifecycle)
    assert not lifecycle.terminal
    deadline = lifecycle.timers["failed_retry"]
    assert deadline == now + 40  # jitter: U(0.5, 1) x the delay; the draw is 1.0
    assert not lifecycle.needs_reset  # the escalation still runs
    assert lifecycle.handle(EscalationFinished(now + 1, lifecycle.generation, ok=False)) == []
    assert not lifecycle.needs_reset  # the timer will end FAILED
    effects = lifecycle.handle(Tick(deadline))
    assert records(effects) == [("FAILED", "recover", "RECONNECTING")]
    assert lifecycle.failures == 0
    assert "failed_retry_delay" in effects[-1].record.reason  # type: ignore[union-attr]


def test_failed_retry_delay_defaults_to_the_backoff_cap_jittered() -> None:
    low, high = new(draw=0.0), new(draw=0.999)
    for lifecycle, share in ((low, 0.5), (high, 0.9995)):
        now = give_up(lifecycle)
        assert lifecycle.timers["failed_retry"] - now == pytest.approx(60 * share)


def test_a_failed_retry_due_during_the_escalation_waits_for_it() -> None:
    lifecycle = new(Config(max_failures=1, failed_retry_delay=5))
    now = give_up(lifecycle)
    generation = lifecycle.generation
    # due, but the escalation still runs (the failed link's close deadline passes too)
    assert records(lifecycle.handle(Tick(now + 10))) == []
    assert lifecycle.state == "FAILED"
    effects = lifecycle.handle(EscalationFinished(now + 12, generation, ok=False))
    assert records(effects) == [("FAILED", "recover", "RECONNECTING")]


def test_failed_after_a_terminal_failure_waits_for_reset() -> None:
    lifecycle = connected(new(Config(failed_retry_delay=5)))
    fail(lifecycle, 1.0, close_code=4500)
    assert (lifecycle.state, lifecycle.terminal) == ("FAILED", True)
    lifecycle.handle(EscalationFinished(2.0, lifecycle.generation, ok=False))
    assert lifecycle.needs_reset
    assert records(lifecycle.handle(Tick(1000.0))) == []
    assert lifecycle.state == "FAILED"
    effects = lifecycle.handle(Reset(1001.0))
    assert records(effects) == [("FAILED", "reset", "RECONNECTING")]
    assert not lifecycle.terminal
    assert not lifecycle.needs_reset


def test_failed_retry_off_keeps_failed_for_good() -> None:
    lifecycle = new(Config(max_failures=1, failed_retry=False))
    now = give_up(lifecycle)
    lifecycle.handle(EscalationFinished(now, lifecycle.generation, ok=False))
    assert lifecycle.needs_reset
    assert records(lifecycle.handle(Tick(now + 3600))) == []
    assert lifecycle.state == "FAILED"


def test_reset_is_refused_unless_failed() -> None:
    lifecycle = connected(new())
    with pytest.raises(TransitionRefused, match="'reset' is not allowed in state CONNECTED"):
        lifecycle.handle(Reset(1.0))


def test_an_application_message_proves_the_session_like_a_heartbeat_ack() -> None:
    lifecycle = new()
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, kind="refused")
    lifecycle.handle(Tick(lifecycle.timers["backoff"]))
    lifecycle.handle(Opened(5.0, lifecycle.generation))
    assert lifecycle.awaits_proof
    lifecycle.handle(MessageReceived(5.1, lifecycle.generation))
    assert (lifecycle.failures, lifecycle.stable, lifecycle.awaits_proof) == (0, True, False)


def test_sessions_recycled_with_1001_that_delivered_messages_never_fail() -> None:
    # The server closes every session with 1001 after 0.4 s while streaming a message
    # every 50 ms; heartbeat 0.6 s, stability window 1 s: every session worked.
    lifecycle = new(
        Config(heartbeat_interval=0.6, heartbeat_timeout=1.8, stability_window=1.0, max_failures=5)
    )
    now = 0.0
    lifecycle.handle(Start(now))
    for _ in range(100):
        lifecycle.handle(Opened(now, lifecycle.generation))
        lifecycle.handle(MessageReceived(now + 0.05, lifecycle.generation))
        now += 0.4
        fail(lifecycle, now, close_code=1001)
        assert lifecycle.state == "RECONNECTING"
        now = lifecycle.timers["backoff"]
        lifecycle.handle(Tick(now))
    assert (lifecycle.state, lifecycle.failures) == ("CONNECTING", 0)


def test_reading_paused_suspends_the_heartbeat_timeout() -> None:
    lifecycle = connected(new(Config(heartbeat_interval=2, heartbeat_timeout=5)))
    lifecycle.handle(Inbound(1.0, lifecycle.generation))
    lifecycle.handle(ReadingPaused(2.0, lifecycle.generation))
    assert lifecycle.reading_paused
    effects = lifecycle.handle(Tick(3600.0))  # an hour behind: still CONNECTED
    assert records(effects) == []
    assert SendHeartbeat(lifecycle.generation) in effects  # heartbeats go on
    [warning] = [e for e in effects if isinstance(e, Notice)]  # once per session
    assert warning.level == "WARNING"
    assert "3598.0 s" in warning.message
    assert lifecycle.state == "CONNECTED"
    lifecycle.handle(Inbound(3600.0, lifecycle.generation))  # frames read before the pause
    # stability expired; the timeout is suspended; only the next heartbeat is due
    assert lifecycle.deadlines() == {"heartbeat": 3602.0}
    lifecycle.handle(ReadingResumed(3601.0, lifecycle.generation))
    assert lifecycle.timers["heartbeat_timeout"] == 3606.0  # counted from the resume
    # A frame read before the resume, handed over late, does not move it back.
    lifecycle.handle(Inbound(3600.5, lifecycle.generation))
    assert lifecycle.timers["heartbeat_timeout"] == 3606.0
    assert records(lifecycle.handle(Tick(3606.0))) == [("CONNECTED", "lost", "RECONNECTING")]


def test_a_refused_trigger_counts_no_failure() -> None:
    lifecycle = connected(new())
    with pytest.raises(TransitionRefused):
        lifecycle.fire("connect_failed", 1.0, failure=failure(kind="refused"))
    assert (lifecycle.failures, lifecycle.last_failure) == (0, None)
    lifecycle.handle(Close(2.0))
    assert lifecycle.failures == 0


def test_a_trigger_refused_by_its_guards_counts_no_failure() -> None:
    lifecycle = new(Config(max_failures=3))
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, kind="refused")
    assert lifecycle.failures == 1
    # give_up's guard (exhausted) refuses: the failure it carried is not counted.
    assert lifecycle.fire("give_up", 2.0, failure=failure(kind="refused")) == []
    assert lifecycle.failures == 1


def test_exhausted_gives_up_without_waiting() -> None:
    lifecycle = new(Config(max_failures=1))
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, kind="refused")
    assert lifecycle.next_deadline() == 1.0
    assert records(lifecycle.handle(Tick(1.0))) == [("RECONNECTING", "give_up", "FAILED")]


@pytest.mark.parametrize(
    "facts",
    [
        {"close_code": 1008},
        {"close_code": 4500},
        {"http_status": 404},
        {"kind": "tls"},
        {"kind": "bad_uri"},
    ],
)
def test_terminal_and_fatal_go_failed_at_once(facts: dict[str, object]) -> None:
    lifecycle = new()
    lifecycle.handle(Start(0.0))
    if "close_code" in facts:
        lifecycle.handle(Opened(0.0, lifecycle.generation))
    effects = fail(lifecycle, 1.0, **facts)
    assert records(effects)[0][1:] == ("fatal", "FAILED")
    assert lifecycle.failures == 0
    assert [e.task for e in effects if isinstance(e, StartTask)] == ["escalation"]


def test_auth_failure_refreshes_once_then_fails() -> None:
    lifecycle = new(refresh=True)
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, http_status=401)
    assert lifecycle.state == "RECONNECTING"
    assert lifecycle.credentials_stale
    assert backoff_delay(lifecycle, 1.0) == 0
    effects = lifecycle.handle(Tick(1.0))
    [retry] = [e.record for e in effects if isinstance(e, Emit)]
    assert (retry.dest, retry.reason) == ("CONNECTING", "retry with refreshed credentials")
    [dial] = [e for e in effects if isinstance(e, StartTask)]
    assert dial.refresh_credentials  # the dial task is told, it does not ask
    lifecycle.handle(CredentialsRefreshed(1.5, lifecycle.generation, "auth", ok=True))
    assert not lifecycle.credentials_stale
    assert records(fail(lifecycle, 2.0, http_status=401)) == [("CONNECTING", "fatal", "FAILED")]


def test_a_refresh_that_failed_is_done_again_by_the_next_dial() -> None:
    """Issue 16 item 4: the refresh itself fails (its endpoint is down: a server
    failure); the next dial refreshes again instead of using stale credentials."""
    lifecycle = new(refresh=True)
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, http_status=401)
    lifecycle.handle(Tick(1.0))  # the retry, which refreshes first
    fail(lifecycle, 1.5, kind="credentials")  # ... and the refresh failed
    assert (lifecycle.state, lifecycle.credentials_stale) == ("RECONNECTING", True)
    effects = lifecycle.handle(Tick(lifecycle.timers["backoff"]))
    [dial] = [e for e in effects if isinstance(e, StartTask)]
    assert dial.refresh_credentials
    lifecycle.handle(CredentialsRefreshed(5.0, lifecycle.generation, "auth", ok=True))
    lifecycle.handle(Opened(5.1, lifecycle.generation))
    assert (lifecycle.state, lifecycle.credentials_stale) == ("CONNECTED", False)


def test_auth_recovers_and_a_later_auth_failure_may_refresh_again() -> None:
    lifecycle = new(refresh=True)
    lifecycle.handle(Start(0.0))
    fail(lifecycle, 1.0, kind="registration_rejected")
    lifecycle.handle(Tick(1.0))
    lifecycle.handle(CredentialsRefreshed(1.5, lifecycle.generation, "auth", ok=True))
    lifecycle.handle(Opened(2.0, lifecycle.generation))
    assert not lifecycle.credentials_stale
    assert not lifecycle.auth_retried  # connected: a later auth failure may refresh again
    fail(lifecycle, 3.0, close_code=1006)
    lifecycle.handle(Tick(lifecycle.timers["backoff"]))
    fail(lifecycle, 9.0, http_status=403)
    assert lifecycle.state == "RECONNECTING"


def test_auth_failure_without_credentials_provider_fails_at_once() -> None:
    lifecycle = new(refresh=False)
    lifecycle.handle(Start(0.0))
    assert records(fail(lifecycle, 1.0, http_status=403)) == [("CONNECTING", "fatal", "FAILED")]


def test_stale_events_are_dropped() -> None:
    lifecycle = new()
    lifecycle.handle(Start(0.0))
    old = lifecycle.generation
    lifecycle.handle(Opened(1.0, old))
    assert lifecycle.handle(Opened(1.0, old)) == []
    assert lifecycle.handle(LinkFailed(2.0, old, failure(kind="refused"))) == []
    assert lifecycle.handle(Rotate(2.0, old)) == []
    assert lifecycle.state == "CONNECTED"


def test_rotate_is_planned_no_failure_no_delay() -> None:
    lifecycle = connected(new())
    effects = lifecycle.handle(Rotate(5.0, lifecycle.generation, reason="token refreshed"))
    assert records(effects) == [("CONNECTED", "rotate", "CONNECTING")]
    assert lifecycle.failures == 0
    assert StartTask("dial", lifecycle.generation, may_escalate=True) in effects


def test_refused_trigger_names_state_and_trigger() -> None:
    lifecycle = connected(new())
    with pytest.raises(
        TransitionRefused, match="trigger 'start' is not allowed in state CONNECTED"
    ) as caught:
        lifecycle.handle(Start(1.0))
    assert (caught.value.state, caught.value.trigger) == ("CONNECTED", "start")
    with pytest.raises(TransitionRefused, match="'nonsense'"):
        lifecycle.fire("nonsense", 1.0)
    with pytest.raises(TransitionRefused):
        new().fire("opened", 0.0)


@pytest.mark.parametrize(
    "state", ["DISCONNECTED", "CONNECTING", "CONNECTED", "RECONNECTING", "FAILED"]
)
def test_close_from_any_state_cancels_its_tasks(state: str) -> None:
    lifecycle = new(Config(max_failures=1))
    paths = {
        "DISCONNECTED": [],
        "CONNECTING": [Start(0.0)],
        "CONNECTED": [Start(0.0), "opened"],
        "RECONNECTING": [Start(0.0), "refused"],
        "FAILED": [Start(0.0), "refused", Tick(0.0)],
    }
    for step in paths[state]:
        if step == "opened":
            lifecycle.handle(Opened(0.0, lifecycle.generation))
        elif step == "refused":
            link = lifecycle.link
            fail(lifecycle, 0.0, kind="refused")
            assert link is not None
            lifecycle.handle(LinkClosed(0.0, link))  # the failed dial left nothing open
        else:
            lifecycle.handle(step)  # type: ignore[arg-type]
    assert lifecycle.state == state
    tasks = MACHINE.states[state].tasks
    effects = lifecycle.handle(Close(1.0))
    assert [e.task for e in effects if isinstance(e, CancelTask)] == list(tasks)
    assert not [e for e in effects if isinstance(e, StartTask)]
    assert lifecycle.state == "CLOSED"
    releases = [e for e in effects if isinstance(e, ReleaseLink)]
    if state in ("CONNECTING", "CONNECTED"):  # a link to close, within close_timeout
        assert releases == [ReleaseLink(1, 1000)]  # the link dialled on the first entry
        assert lifecycle.deadlines() == {"close_link": 6.0}
        assert lifecycle.handle(LinkClosed(1.5, releases[0].link)) == []
    else:
        assert releases == []
    assert lifecycle.next_deadline() is None
    assert lifecycle.handle(Close(2.0)) == []


def test_one_machine_serves_many_models() -> None:
    first, second = new(), new()
    connected(first)
    assert second.state == "DISCONNECTED"
    second.handle(Start(0.0))
    assert (first.state, second.state) == ("CONNECTED", "CONNECTING")
    assert first.machine is second.machine


def test_spec_without_the_connection_triggers_is_refused() -> None:
    spec = Spec.from_mapping(
        {
            "initial": "A",
            "states": {"A": {}, "B": {"final": True}},
            "transitions": [{"trigger": "go", "source": "A", "dest": "B"}],
        }
    )
    with pytest.raises(SpecError, match="needs the triggers close, connect_failed"):
        LifecycleMachine(spec)
    lifecycle = Lifecycle(LifecycleMachine(spec, require_triggers=False), Config())
    assert records(lifecycle.fire("go", 1.0)) == [("A", "go", "B")]


IO_MODULES = {"anyio", "websockets", "rich", "trio", "asyncio", "sniffio", "threading", "time"}


def test_core_imports_no_io_libraries() -> None:
    # The package's __init__ re-exports the runtime; load the core without it.
    package = Path(fsm_live.core.__file__).parent.parent
    code = (
        "import sys, types\n"
        "stub = types.ModuleType('fsm_live')\n"
        f"stub.__path__ = [{str(package)!r}]\n"
        "sys.modules['fsm_live'] = stub\n"
        "import fsm_live.core.lifecycle\n"
        f"print(sorted({IO_MODULES - {'time', 'threading'}!r} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_core_sources_import_no_clock_or_io() -> None:
    # `time` is loaded by the stdlib (logging); the core itself must not read a clock.
    core = Path(fsm_live.core.__file__).parent
    for path in core.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & IO_MODULES, f"{path.name} imports {names & IO_MODULES}"


def test_next_deadline_covers_every_deadline_the_core_keeps() -> None:
    """Every kind of deadline (the spec's timers and DEADLINE_KINDS) shows in
    deadlines(), and next_deadline() is always the earliest of them."""
    from fsm_live.core.lifecycle import DEADLINE_KINDS

    lifecycle = Lifecycle(
        MACHINE,
        Config(max_failures=2, failed_retry_delay=5),
        random=lambda: 0.5,
        refreshable=("token", "cookies"),
        endpoint=Endpoint("server.test:80", down_after=2, random=lambda: 0.5),
    )
    seen: set[str] = set()

    def look() -> None:
        deadlines = lifecycle.deadlines()
        seen.update(deadlines)
        assert lifecycle.next_deadline() == (min(deadlines.values()) if deadlines else None)

    connected(lifecycle)
    lifecycle.dedup.seen("message 1", 0.0)
    lifecycle.ledger.queue("request", ack_id=1, deadline=30.0)
    look()
    lifecycle.handle(ReadingPaused(1.0, lifecycle.generation))
    look()
    lifecycle.handle(Rotate(2.0, lifecycle.generation))
    look()
    fail(lifecycle, 3.0, kind="refused")  # the endpoint's first failure: back off
    look()
    lifecycle.handle(Tick(lifecycle.timers["backoff"]))
    fail(lifecycle, 4.0, kind="refused")  # its second: it is down, WAITING
    look()
    lifecycle.handle(Tick(lifecycle.timers["probe"]))  # probe: CONNECTING again
    fail(lifecycle, 5.0, http_status=429)  # not the endpoint's: backoff, exhausted
    lifecycle.handle(Tick(lifecycle.timers["backoff"]))  # give up, FAILED
    look()
    assert lifecycle.state == "FAILED"
    timers = {timer.name for state in MACHINE.spec.states.values() for timer in state.timers}
    assert seen == timers | set(DEADLINE_KINDS)
