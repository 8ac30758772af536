"""The driver: one task per connection that feeds the core and executes its effects.

The four runner rules of ARCHITECTURE.md section 2 live here:

1. only the driver fires triggers; tasks :meth:`Driver.post` events to it through
   a memory stream;
2. the Machine's callbacks are synchronous and only record effects (the core);
3. every cancelled task is joined before the driver goes on (bounded by
   ``close_timeout``; a task that does not finish is reported, not forgotten);
4. events carry their task's generation; the core drops stale ones.

A :class:`Driver` knows nothing of WebSockets: task bodies are given to it by
name (``fsm_live.connection`` supplies them) and it reports every transition to
its observers.  All time is ``anyio.current_time()``.

A spec task is run in one of two ways, chosen by its body:

* a coroutine function runs as its own anyio task for as long as its state is
  active (the reader, the heartbeat);
* a :class:`Periodic` costs no task while it waits: the driver keeps its
  deadline next to the core's and, when it is due, runs its action as a short
  task.  Leaving the state cancels the schedule and joins a running action like
  any task.  Token and cookie refresh and the cleanup sweep are periodic: an
  idle connection holds only the tasks that must wait on the network.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import attrs

from fsm_live.core.effects import CancelTask, Effect, Emit, StartTask, TransitionRecord
from fsm_live.core.events import Event, Failed, Inbound, Tick
from fsm_live.core.lifecycle import Lifecycle
from fsm_live.errors import TransitionRefused

__all__ = ("Driver", "Job", "Periodic", "TaskBody")

logger = logging.getLogger("fsm_live")

#: A coroutine task body: runs while its state is active; receives its generation.
Job = Callable[[int], Awaitable[None]]
#: Events waiting for the driver; tasks block (backpressure) beyond this.
_EVENT_BUFFER = 64


@attrs.frozen
class Periodic:
    """A task that runs ``action(generation)`` every ``delay()`` seconds while its
    state is active, the first time ``delay()`` after entering it.

    ``delay`` is asked again after every run (a refresh that failed can ask for a
    shorter retry).  A run still going when the next is due delays the next.
    """

    action: Job
    delay: Callable[[], float]


TaskBody = Job | Periodic


@attrs.define
class _Running:
    generation: int
    scope: anyio.CancelScope | None = None  # None while a Periodic waits
    finished: bool = False
    due: float = math.inf  # a Periodic's next run


def _job(body: TaskBody) -> Job:
    return body.action if isinstance(body, Periodic) else body


class Driver:
    """Runs one :class:`Lifecycle`: events in, effects out, tasks started and joined.

    ``bodies`` maps every task name the spec uses to its body.  ``observers`` are
    called synchronously with every :class:`TransitionRecord`, after the
    transition's tasks were cancelled (and joined) and started.
    """

    def __init__(
        self,
        lifecycle: Lifecycle,
        bodies: Mapping[str, TaskBody],
        *,
        join_timeout: float,
        classify_crash: Callable[[BaseException], Any],
    ) -> None:
        self.lifecycle = lifecycle
        self.bodies = bodies
        self.join_timeout = join_timeout
        self.observers: list[Callable[[TransitionRecord], None]] = []
        self.stuck_tasks = 0
        self._classify_crash = classify_crash
        self._send, self._receive = anyio.create_memory_object_stream[Event](_EVENT_BUFFER)
        self._running: dict[str, _Running] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._last_inbound = -math.inf
        self._changed = anyio.Event()

    # -- for tasks and the application -------------------------------------------------

    async def post(self, event: Event) -> None:
        """Queue an event for the driver (waits while the queue is full).

        Events posted after the driver finished are dropped: the lifecycle is final.
        """
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._send.send(event)

    def note_inbound(self, now: float) -> None:
        """Record that a frame arrived at ``now`` (no event: it only moves a deadline).

        The reader calls this per frame; the driver hands the latest value to the
        core before it fires a heartbeat timeout, so a busy link costs no events.
        """
        self._last_inbound = now

    @property
    def tasks_alive(self) -> int:
        """Task bodies running now (a Periodic waiting for its next run is not)."""
        return sum(running.scope is not None for running in self._running.values())

    async def wait_changed(self) -> None:
        """Return after the next transition or task exit (at once once the driver finished)."""
        await self._changed.wait()

    def _notify_changed(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- the driver task ---------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Drive the lifecycle until it reaches a final state.

        Whatever way it ends (final state, cancellation, error), every task it
        started is cancelled and joined first.  Raises ValueError if a task the
        spec names has no body.
        """
        needed = {task for state in self.lifecycle.machine.states.values()
                  for task in state.tasks}
        if missing := needed - set(self.bodies):
            raise ValueError(f"no task body for {', '.join(sorted(missing))}")
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                task_status.started()
                try:
                    while not self.lifecycle.is_final:
                        await self._step(await self._next_event())
                finally:
                    with anyio.CancelScope(shield=True):
                        for name in list(self._running):
                            await self._cancel(name)
        finally:
            self._receive.close()
            self._send.close()
            self._changed.set()

    async def _next_event(self) -> Event:
        try:
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            pass
        core_deadline = self.lifecycle.next_deadline()
        deadline = min(math.inf if core_deadline is None else core_deadline,
                       min((r.due for r in self._running.values()), default=math.inf))
        if deadline == math.inf:
            return await self._receive.receive()
        with anyio.move_on_after(deadline - anyio.current_time()):
            return await self._receive.receive()
        return Tick(anyio.current_time())

    async def _step(self, event: Event) -> None:
        lifecycle = self.lifecycle
        if isinstance(event, Tick):
            self._run_due_periodics(event.now)
            if self._last_inbound > lifecycle.last_inbound:
                lifecycle.handle(Inbound(self._last_inbound, lifecycle.generation))
        try:
            effects = lifecycle.handle(event)
        except TransitionRefused as refused:
            # A current-generation task reported something its state has no edge for
            # (say, a crash in FAILED): report it, keep driving.
            logger.warning("dropped %s: %s", type(event).__name__, refused)
            return
        await self.execute(effects)

    async def execute(self, effects: list[Effect]) -> None:
        """Execute effects in order: start tasks, cancel and join them, notify observers."""
        for effect in effects:
            if isinstance(effect, StartTask):
                self._start(effect.task, effect.generation)
            elif isinstance(effect, CancelTask):
                await self._cancel(effect.task)
            elif isinstance(effect, Emit):
                for observer in self.observers:
                    observer(effect.record)
                self._notify_changed()
            # ScheduleTimer / CancelTimer: next_deadline() already reflects them.

    def _start(self, name: str, generation: int) -> None:
        body = self.bodies[name]
        running = _Running(generation)
        self._running[name] = running
        if isinstance(body, Periodic):
            running.due = anyio.current_time() + body.delay()
        else:
            self._spawn(name, running)

    def _spawn(self, name: str, running: _Running) -> None:
        assert self._task_group is not None, "the driver is not running"
        running.scope = anyio.CancelScope()
        running.finished = False
        self._task_group.start_soon(self._run_task, name, running, name=f"fsm_live:{name}")

    def _run_due_periodics(self, now: float) -> None:
        for name, running in self._running.items():
            body = self.bodies[name]
            if running.due <= now and isinstance(body, Periodic):
                running.due = math.inf  # rescheduled when this run ends
                self._spawn(name, running)

    async def _run_task(self, name: str, running: _Running) -> None:
        assert running.scope is not None
        body = self.bodies[name]
        try:
            with running.scope:
                await _job(body)(running.generation)
        except Exception as exc:
            # A crashed task must not die silently: log it and make the link fail over.
            logger.exception("task %s crashed", name)
            await self.post(Failed(anyio.current_time(), running.generation,
                                   self._classify_crash(exc)))
        finally:
            running.finished = True
            running.scope = None
            if isinstance(body, Periodic) and self._running.get(name) is running:
                running.due = anyio.current_time() + body.delay()
            self._notify_changed()

    async def _cancel(self, name: str) -> None:
        running = self._running.pop(name, None)
        if running is None or running.scope is None:
            return  # a Periodic between runs, or a task that already returned
        running.scope.cancel()
        with anyio.move_on_after(self.join_timeout, shield=True):
            while not running.finished:
                await self._changed.wait()
        if not running.finished:
            self.stuck_tasks += 1
            logger.error("task %s did not finish within %.3g s of its cancellation",
                         name, self.join_timeout)
