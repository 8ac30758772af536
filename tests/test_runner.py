"""fsm_live.runner.Runner: a user's spec running on the user's object, on asyncio and trio.

Timed tests run on trio's MockClock (virtual time); the asyncio runs use delays of
a few milliseconds and assert only what happened and in which order, never how
long it took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from fsm_live.core.effects import TransitionRecord
from fsm_live.errors import TransitionRefused, UsageError
from fsm_live.runner import Runner, TaskContext
from fsm_live.spec import Registry, Spec

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]
EXAMPLES = Path(__file__).resolve().parent.parent / "specs" / "examples"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return "trio", {"clock": MockClock(autojump_threshold=0)}
    return "asyncio"


def virtual() -> bool:
    """True on trio's MockClock: delays may be realistic; else they are milliseconds."""
    import sniffio

    return sniffio.current_async_library() == "trio"


# -- a dialer: a task per state, a timer, a report from a task ---------------------------------

DIALER = Spec.from_yaml(
    """\
name: dialer
initial: IDLE
tasks:
  heartbeat: {description: runs while idle (from the start)}
  dial: {description: dials and reports connected}
  hold: {description: never reports (cancelled when its state is left)}
timers:
  dial_timeout: {description: a dial must finish in time}
  pause: {description: the wait before the next dial}
actions: [count_dial]
states:
  IDLE: {tasks: [heartbeat]}
  DIALING: {tasks: [dial, hold], timers: {dial_timeout: failed}, on_enter: [count_dial]}
  UP: {}
  WAITING: {timers: {pause: redial}}
  DONE: {final: true}
transitions:
  - {trigger: start, source: IDLE, dest: DIALING}
  - {trigger: connected, source: DIALING, dest: UP}
  - {trigger: failed, source: DIALING, dest: WAITING}
  - {trigger: redial, source: WAITING, dest: DIALING}
  - {trigger: stop, source: '*', dest: DONE}
""",
    "dialer.yaml",
)


@dataclass
class Dialer:
    succeed_on: int = 3  # the dial that succeeds (1-based)
    dial_seconds: float = 5.0
    timeout: float = 10.0
    pause_seconds: float = 30.0
    dials: int = 0
    events: list[str] = field(default_factory=list)
    stale_reports: list[bool] = field(default_factory=list)
    holding: anyio.Event = field(default_factory=anyio.Event)


dialer = Registry("dialer")


@dialer.task
async def heartbeat(context: TaskContext) -> None:
    context.subject.events.append(f"heartbeat in {context.state}")
    await anyio.sleep_forever()


@dialer.task
async def dial(context: TaskContext) -> None:
    d: Dialer = context.subject
    await anyio.sleep(d.dial_seconds)
    if d.dials >= d.succeed_on:
        context.fire("connected")
    # else: hang, and let the dial timeout fire


@dialer.task
async def hold(context: TaskContext) -> None:
    d: Dialer = context.subject
    d.holding.set()
    try:
        await anyio.sleep_forever()
    finally:
        d.events.append(f"hold {context.generation} cancelled")
        # A report from a task whose state was left is dropped.
        d.stale_reports.append(context.fire("stop"))


@dialer.timer
def dial_timeout(d: Dialer) -> float:
    # The dial that succeeds gets all the time it needs: on asyncio's real clock, a
    # busy machine may start its task late, and the test is about order, not time.
    return d.timeout if d.dials < d.succeed_on else 1000 * d.timeout


@dialer.timer
def pause(d: Dialer) -> float:
    return d.pause_seconds


@dialer.action
def count_dial(d: Dialer) -> None:
    d.dials += 1


def scaled(d: Dialer) -> Dialer:
    if not virtual():
        d.dial_seconds, d.timeout, d.pause_seconds = 0.005, 0.01, 0.003
    return d


async def test_timers_tasks_reports_and_generations() -> None:
    d = scaled(Dialer())
    records: list[TransitionRecord] = []
    async with Runner(DIALER, dialer).run(d, on_transition=records.append) as machine:
        await anyio.wait_all_tasks_blocked()  # nothing is due: no timer is armed in IDLE
        assert d.events == ["heartbeat in IDLE"]  # the initial state's task runs
        assert machine.tasks == {"heartbeat"}
        assert machine.fire("start")
        await machine.wait_for("UP")
        await anyio.wait_all_tasks_blocked()
        assert machine.tasks == frozenset()  # every task of a left state finished
        machine.fire("stop")
    path = [(r.source, r.trigger, r.dest) for r in records]
    assert path == [
        ("IDLE", "start", "DIALING"),
        ("DIALING", "failed", "WAITING"),
        ("WAITING", "redial", "DIALING"),
        ("DIALING", "failed", "WAITING"),
        ("WAITING", "redial", "DIALING"),
        ("DIALING", "connected", "UP"),
        ("UP", "stop", "DONE"),
    ]
    assert d.dials == 3
    assert d.events[1:] == ["hold 2 cancelled", "hold 4 cancelled", "hold 6 cancelled"]
    assert d.stale_reports == [False, False, False]
    if virtual():  # the timers ran on the event loop's (virtual) clock
        start = records[0].at
        assert [round(r.at - start, 6) for r in records[:4]] == [0, 10, 40, 50]


async def test_leaving_the_block_cancels_and_joins_the_tasks() -> None:
    d = Dialer(succeed_on=99, timeout=1000)  # no timer expires during the test
    async with Runner(DIALER, dialer).run(d) as machine:
        machine.fire("start")
        await d.holding.wait()
        assert {"dial", "hold"} <= machine.tasks  # (heartbeat may still be finishing)
    assert machine.tasks == frozenset()
    assert d.events[-1] == "hold 2 cancelled"
    with pytest.raises(UsageError, match="outside `async with`"):
        machine.fire("stop")


async def test_fire_refused_and_wait_for_an_unknown_state() -> None:
    async with Runner(DIALER, dialer).run(scaled(Dialer())) as machine:
        with pytest.raises(TransitionRefused):
            machine.fire("connected")
        with pytest.raises(KeyError):
            await machine.wait_for("NOWHERE")
        machine.fire("stop")


async def test_a_task_that_raises_ends_the_run() -> None:
    broken = Registry("broken")
    for binding in dialer:
        if binding.name != "dial":
            broken.bind(binding.kind, binding.name, binding.func)

    @broken.task("dial")
    async def _dial(context: TaskContext) -> None:
        raise RuntimeError("no route to the peer")

    async def run() -> None:
        async with Runner(DIALER, broken).run(scaled(Dialer())) as machine:
            machine.fire("start")
            await anyio.sleep_forever()

    with pytest.raises(ExceptionGroup) as caught:
        await run()
    assert caught.group_contains(RuntimeError, match="no route to the peer")


# -- a spec from another library's documentation: XState's lightDelayMachine ---------------------


async def test_xstates_light_delay_machine_runs_with_its_timers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries  # type: ignore[import-not-found]

    light = registries.Light()
    if not virtual():
        light.green, light.yellow, light.red = 0.003, 0.002, 0.004
    seen: list[TransitionRecord] = []
    runner = Runner(EXAMPLES / "light_delay.yaml", registries.light_delay)
    async with runner.run(light, on_transition=seen.append) as machine:
        for _ in range(2):
            await machine.wait_for("red")
            await machine.wait_for("green")
        machine.fire("switch_off")
    assert [r.dest for r in seen] == ["yellow", "red", "green"] * 2 + ["switched_off"]
    assert light.cycles == 2
    if virtual():  # XState's docs: 1000 ms green, 500 ms yellow, 2000 ms red
        assert [round(r.at - seen[0].at, 6) for r in seen[:4]] == [0, 0.5, 2.5, 3.5]


async def test_an_exception_of_the_block_goes_on_unchanged() -> None:
    async def run() -> None:
        async with Runner(DIALER, dialer).run(scaled(Dialer())) as machine:
            machine.fire("start")
            raise LookupError("the application's own")

    with pytest.raises(LookupError, match="the application's own"):
        await run()
