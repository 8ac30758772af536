"""Traces of a fleet through an outage of its server, for tests of the report at fleet size.

Each member's story is the one a real run showed (``fsm-live fleet`` with 300 lwp
accounts against ``fsm-live serve``, the server stopped for 30 s after 40 s, the
fleet closed after 150 s): dial and connect at once; stay up, heartbeats acked;
lose the link when the server goes; fail each dial on a growing jittered backoff
(the default ``ExponentialJitter(1, 60)``) until ``max_failures`` (5) in a row; wait
in the failed state ``failed_retry_delay`` (30-60 s, jittered), recover and retry;
connect again once the server is back; closed by the application at the end.

The lines are written by the runtime's own :class:`~fsm_live._runtime.trace.TraceWriter`
(transitions, failure records, stats records every ``interval``), and the states and
triggers are read from the spec by role and edge, never by name, so the traces hold
whatever the spec calls its states (tests/test_renamed_states.py).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from fsm_live._runtime.stats import Stats
from fsm_live._runtime.trace import TraceWriter
from fsm_live.core.effects import TransitionRecord
from fsm_live.spec import Spec

__all__ = ("write_fleet_traces",)


class _Roles:
    """The edges of the story, found in the spec by role."""

    def __init__(self, spec: Spec) -> None:
        self.initial = spec.initial
        (self.success,) = spec.success_states
        (self.failed,) = spec.failed_states
        (self.final,) = spec.final_states
        self.start, self.dial = self._edge(spec, self.initial, lambda dest: True)
        self.opened, _ = self._edge(spec, self.dial, lambda dest: dest == self.success)
        self.lost, self.waiting = self._edge(
            spec,
            self.success,
            lambda dest: dest not in (self.dial, self.failed, self.final),
        )
        self.connect_failed, _ = self._edge(spec, self.dial, lambda dest: dest == self.waiting)
        self.retry, _ = self._edge(spec, self.waiting, lambda dest: dest == self.dial)
        self.give_up, _ = self._edge(spec, self.waiting, lambda dest: dest == self.failed)
        self.recover, _ = self._edge(spec, self.failed, lambda dest: dest == self.waiting)
        self.close, _ = self._edge(spec, self.success, lambda dest: dest == self.final)

    @staticmethod
    def _edge(spec: Spec, source: str, wanted: Any) -> tuple[str, str]:
        for transition in spec.transitions_from(source):
            if wanted(transition.dest):
                return transition.trigger, transition.dest
        raise AssertionError(f"no edge from {source} for the story")


class _Member:
    """One member's connection as its trace writer sees it."""

    def __init__(self, path: Path, roles: _Roles, rng: random.Random) -> None:
        self.writer = TraceWriter(
            path,
            0.0,
            stats=self.stats,
            clock=self.clock,
            interval=60.0,  # type: ignore[arg-type]
        )
        self.roles = roles
        self.rng = rng
        self.state = roles.initial
        self.now = 0.0
        self.counters: dict[str, Any] = {
            "connects": 0,
            "reconnects": 0,
            "heartbeats_sent": 0,
            "heartbeats_acked": 0,
            "messages_in": 0,
        }
        self.failures: dict[str, int] = {}

    def clock(self) -> float:
        return self.now

    def stats(self) -> Stats:
        return Stats(
            state=self.state,
            reconnects=self.counters["reconnects"],
            failures=dict(self.failures),
            connects=self.counters["connects"],
            heartbeats_sent=self.counters["heartbeats_sent"],
            heartbeats_acked=self.counters["heartbeats_acked"],
            messages_in=self.counters["messages_in"],
            duplicates_dropped=self.counters["messages_in"] // 6,
        )

    def go(self, at: float, trigger: str, dest: str, reason: str, error: str | None = None) -> None:
        self.now = at
        if error is not None:
            self.failures[error] = self.failures.get(error, 0) + 1
        if dest == self.roles.dial and self.state != self.roles.initial:
            self.counters["reconnects"] += 1
        if dest == self.roles.success:
            self.counters["connects"] += 1
        record = TransitionRecord(at, self.state, dest, trigger, reason, error)
        self.state = dest
        self.writer.write(record)

    def up_until(self, end: float) -> None:
        """Heartbeats every 15 s and messages while up, until ``end``."""
        at = self.now + 15.0
        while at < end:
            self.counters["heartbeats_sent"] += 1
            self.counters["heartbeats_acked"] += 1
            self.counters["messages_in"] += 15
            self.writer.heartbeat_acked(at, self.rng.lognormvariate(-7.6, 0.8))
            at += 15.0
        self.now = end


def write_fleet_traces(
    directory: Path,
    spec: Spec,
    members: int = 300,
    *,
    down: float = 40.0,
    up: float = 70.0,
    end: float = 150.0,
    seed: int = 20,
) -> list[Path]:
    """Write one trace per member (``member000.jsonl``, ...) into ``directory``: the
    server goes away at ``down`` seconds and is back at ``up``; the fleet closes at
    ``end``.  Returns the files."""
    roles = _Roles(spec)
    rng = random.Random(seed)
    paths = []
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(members):
        path = directory / f"member{index:03d}.jsonl"
        paths.append(path)
        member = _Member(path, roles, rng)
        with member.writer:
            _story(member, roles, rng, down + rng.uniform(0, 0.3), up, end)
    return paths


def _story(
    member: _Member, roles: _Roles, rng: random.Random, down: float, up: float, end: float
) -> None:
    at = rng.uniform(0.0, 0.6)
    member.go(at, roles.start, roles.dial, "started")
    member.go(at + rng.uniform(0.002, 0.04), roles.opened, roles.success, "opened")
    member.up_until(down)
    member.go(down, roles.lost, roles.waiting, "planned: closed 1001 (going away)", "planned")
    at, failures = down, 0
    while True:
        at += rng.uniform(0.0, min(60.0, 2.0**failures))
        member.go(at, roles.retry, roles.dial, "backoff elapsed")
        at += rng.uniform(0.001, 0.003)
        if at >= up:
            member.go(at, roles.opened, roles.success, "opened")
            break
        member.go(at, roles.connect_failed, roles.waiting, "network: connection refused", "network")
        failures += 1
        if failures == 5:
            member.go(at, roles.give_up, roles.failed, "5 failures in a row")
            at += rng.uniform(30.0, 60.0)
            reason = "failed_retry_delay elapsed: retrying with the failure count reset"
            member.go(at, roles.recover, roles.waiting, reason)
            failures = 0
    member.up_until(end)
    member.go(end + rng.uniform(0.0, 0.01), roles.close, roles.final, "closed by the application")
