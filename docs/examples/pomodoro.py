"""A pomodoro timer run from its spec (docs/examples/pomodoro.yaml) on a Pomodoro object.

python docs/examples/pomodoro.py
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anyio

from fsm_live.core.effects import TransitionRecord
from fsm_live.runner import Runner, TaskContext
from fsm_live.spec import Registry

SPEC = Path(__file__).with_name("pomodoro.yaml")


@dataclass
class Pomodoro:
    """Settings in seconds, and what happened so far."""

    focus_seconds: float = 25 * 60
    short_break_seconds: float = 5 * 60
    long_break_seconds: float = 15 * 60
    sessions: int = 0  # focus sessions done in this round of four
    rounds: int = 0
    chimes: list[str] = field(default_factory=list)


registry = Registry("pomodoro")


@registry.guard
def long_break_due(pomodoro: Pomodoro) -> bool:
    return pomodoro.sessions + 1 == 4


@registry.action
def count_session(pomodoro: Pomodoro) -> None:
    pomodoro.sessions += 1


@registry.action
def new_round(pomodoro: Pomodoro) -> None:
    pomodoro.sessions = 0
    pomodoro.rounds += 1


@registry.timer("focus")
def _focus(pomodoro: Pomodoro) -> float:
    return pomodoro.focus_seconds


@registry.timer("short_break")
def _short_break(pomodoro: Pomodoro) -> float:
    return pomodoro.short_break_seconds


@registry.timer("long_break")
def _long_break(pomodoro: Pomodoro) -> float:
    return pomodoro.long_break_seconds


@registry.task
async def chime(context: TaskContext) -> None:
    context.subject.chimes.append(context.state)  # a real one would play a sound


runner = Runner(SPEC, registry)


async def main() -> None:
    # Seconds for minutes, so the example ends quickly.
    pomodoro = Pomodoro(focus_seconds=0.025, short_break_seconds=0.005, long_break_seconds=0.015)

    def show(record: TransitionRecord) -> None:
        print(f"{record.source} -{record.trigger}-> {record.dest} ({pomodoro.sessions} done)")

    async with runner.run(pomodoro, on_transition=show) as machine:
        machine.fire("start")
        await machine.wait_for("LONG_BREAK")  # after four sessions
        await machine.wait_for("FOCUS")  # the next round begins
        machine.fire("stop")
    print(f"{pomodoro.rounds} round; chimes in {', '.join(pomodoro.chimes)}")


if __name__ == "__main__":
    anyio.run(main)  # or anyio.run(main, backend="trio")
