"""The driver: one task per connection that feeds the core and executes its effects.

The four runner rules of ARCHITECTURE.md section 2 live here:

1. only the driver fires triggers; tasks :meth:`Driver.post` events to it through
   a bounded queue;
2. the Machine's callbacks are synchronous and only record effects (the core);
3. every cancelled task is joined before the driver goes on (bounded by
   ``close_timeout``; a task that does not finish is reported, not forgotten);
4. events carry their task's generation; the core drops stale ones.

A :class:`Driver` knows nothing of WebSockets: task bodies are given to it by
name (``fsm_live.connection`` supplies them) and it reports every transition to
its observers.  All time is ``anyio.current_time()``, read through
:attr:`Driver.clock`.

The driver waits for the next posted event or its next deadline: a wait with a
deadline costs one cancel scope, and an Event exists only while the driver
waits (:class:`~fsm_live.wakeup.Wakeup`); an event already queued costs neither.

A spec task is run in one of three ways, chosen by its body:

* a coroutine function runs as its own anyio task for as long as its state is
  active (the reader, the heartbeat);
* a :class:`Periodic` costs no task while it waits: the driver keeps its
  deadline next to the core's and, when it is due, runs its action as a short
  task.  Token and cookie refresh and the cleanup sweep are periodic;
* an :class:`OnDemand` costs no task while idle either: its action runs as a
  short task when :meth:`Driver.request` asks for it (the outbound flush, when
  ``send()`` buffers a frame).

Leaving the state cancels the schedule of the last two, and joins a running
action like any task.  So an idle connection holds only the tasks that must wait
on the network.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import attrs
import sniffio

from fsm_live.core.effects import CancelTask, Effect, Emit, StartTask, TransitionRecord
from fsm_live.core.events import Close, Event, Failed, Inbound, Tick
from fsm_live.core.lifecycle import Lifecycle
from fsm_live.errors import TransitionRefused
from fsm_live.wakeup import Wakeup

__all__ = ("Driver", "Job", "OnDemand", "Periodic", "TaskBody", "backend_clock")

logger = logging.getLogger("fsm_live")

#: A coroutine task body: runs while its state is active; receives its generation.
Job = Callable[[int], Awaitable[None]]
#: Events waiting for the driver; tasks block (backpressure) beyond this.
_EVENT_BUFFER = 64


def backend_clock() -> Callable[[], float]:
    """The running backend's clock: a function that returns ``anyio.current_time()``.

    ``anyio.current_time()`` finds the backend through sniffio at every call, about
    1 µs on Python 3.11 (where ``asyncio.current_task`` is pure Python): most of
    the cost of a hot path that reads the time once per frame.  The function
    returned reads the same clock directly (``loop.time`` on asyncio,
    ``trio.current_time`` on trio, virtual clocks included).  Call this inside the
    event loop; the result is valid while that loop runs.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        return asyncio.get_running_loop().time
    if library == "trio":
        import trio

        return trio.current_time
    return anyio.current_time


@attrs.frozen
class Periodic:
    """A task that runs ``action(generation)`` every ``delay()`` seconds while its
    state is active, the first time ``delay()`` after entering it.

    ``delay`` is asked again after every run (a refresh that failed can ask for a
    shorter retry).  A run still going when the next is due delays the next.
    """

    action: Job
    delay: Callable[[], float]


@attrs.frozen
class OnDemand:
    """A task that runs ``action(generation)`` when :meth:`Driver.request` asks for
    it while its state is active, and on entering the state if ``pending()``.

    A request while the action runs is a no-op: the action must look for more
    work before it returns (e.g. drain its queue until it is empty).  It must not
    await between finding nothing left and returning, or a request could be lost.
    """

    action: Job
    pending: Callable[[], bool]


TaskBody = Job | Periodic | OnDemand


@attrs.define
class _Running:
    generation: int
    scope: anyio.CancelScope | None = None  # None while a Periodic/OnDemand is idle
    finished: bool = False
    due: float = math.inf  # a Periodic's next run


def _job(body: TaskBody) -> Job:
    return body.action if isinstance(body, Periodic | OnDemand) else body


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
        # Posted events, oldest first.  At most _EVENT_BUFFER, and mostly empty: a
        # list is much smaller than a deque (which allocates 64 slots at once).
        self._events: list[Event] = []
        self._posted = Wakeup()  # the driver waits here for an event
        self._taken = Wakeup()  # posters wait here while _events is full
        self._changed = Wakeup()  # a transition, or a task exit
        self._finished = False
        self._running: dict[str, _Running] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._last_inbound = -math.inf
        #: ``anyio.current_time``, replaced by the cheaper :func:`backend_clock` once
        #: the driver runs; tasks read the time through it.
        self.clock: Callable[[], float] = anyio.current_time

    # -- for tasks and the application -------------------------------------------------

    async def post(self, event: Event) -> None:
        """Queue an event for the driver; waits (only) while the queue is full.

        Not a checkpoint otherwise: posting costs no task switch.  Events posted
        after the driver finished are dropped: the lifecycle is final.
        """
        while len(self._events) >= _EVENT_BUFFER and not self._finished:
            await self._taken.wait()
        if self._finished:
            return
        self._events.append(event)
        self._posted.notify()

    def post_nowait(self, event: Event) -> None:
        """Queue an event without waiting, even past the bound (for the connection's
        own rare events, such as a close after a callback raised)."""
        if not self._finished:
            self._events.append(event)
            self._posted.notify()

    def note_inbound(self, now: float) -> None:
        """Record that a frame arrived at ``now`` (no event: it only moves a deadline).

        The reader calls this per frame; the driver hands the latest value to the
        core before it fires a heartbeat timeout, so a busy link costs no events.
        """
        self._last_inbound = now

    def request(self, name: str) -> None:
        """Run the :class:`OnDemand` task ``name`` now, unless it runs already or
        its state is not active (then it runs on entering it, if ``pending()``).

        Synchronous and cheap: call it from any task of the driver's event loop.
        """
        running = self._running.get(name)
        if (running is not None and running.scope is None
                and isinstance(self.bodies[name], OnDemand)):
            self._spawn(name, running)

    @property
    def tasks_alive(self) -> int:
        """Task bodies running now (an idle Periodic or OnDemand is not)."""
        return sum(running.scope is not None for running in self._running.values())

    async def wait_changed(self) -> None:
        """Return after the next event handled, transition or task exit (at once once the
        driver finished)."""
        if not self._finished:
            await self._changed.wait()

    # -- the driver task ---------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Drive the lifecycle until it reaches a final state.

        Whatever way it ends (final state, cancellation, error), every task it
        started is cancelled and joined first.  Raises ValueError if a task the
        spec names has no body.
        """
        self._check_bodies()
        self.clock = backend_clock()
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
                        self._close_lifecycle()
        finally:
            self._finished = True
            self._events.clear()
            self._changed.notify()
            self._taken.notify()

    def _close_lifecycle(self) -> None:
        """The driver ends before the lifecycle did (it was cancelled from outside, or
        crashed): close the lifecycle too, so its state, trace and observers end in
        the final state.  Its tasks are joined already."""
        lifecycle = self.lifecycle
        if lifecycle.is_final:
            return
        reason = "the connection's task was cancelled before it closed"
        for effect in lifecycle.handle(Close(self.clock(), reason)):
            if isinstance(effect, Emit):
                for observer in self.observers:
                    try:
                        observer(effect.record)
                    except Exception:  # the driver is ending: report, never mask why
                        logger.exception("a transition observer raised at the final close")

    def _check_bodies(self) -> None:
        # Not inline in run(): its locals would live as long as the connection.
        needed = {task for state in self.lifecycle.machine.states.values()
                  for task in state.tasks}
        if missing := needed - set(self.bodies):
            raise ValueError(f"no task body for {', '.join(sorted(missing))}")

    async def _next_event(self) -> Event:
        """The oldest posted event; else a Tick once the earliest deadline is due.

        Posted events come first.  Only when there is none does the driver wait,
        under a cancel scope only if a deadline is armed.
        """
        while not self._events:
            self._hand_inbound()  # the heartbeat deadline moves: fewer Ticks
            deadline = self._next_deadline()
            now = self.clock()
            if deadline <= now:
                return Tick(now)
            if deadline == math.inf:
                await self._posted.wait()
            else:
                with anyio.CancelScope(deadline=deadline):
                    await self._posted.wait()
        self._taken.notify()
        return self._events.pop(0)

    def _hand_inbound(self) -> None:
        """Give the core the time of the last frame the reader noted, if newer."""
        lifecycle = self.lifecycle
        if self._last_inbound > lifecycle.last_inbound:
            lifecycle.handle(Inbound(self._last_inbound, lifecycle.generation))

    def _next_deadline(self) -> float:
        """The earliest of the core's deadline and the periodic tasks' next runs."""
        core_deadline = self.lifecycle.next_deadline()
        deadline = math.inf if core_deadline is None else core_deadline
        for running in self._running.values():
            deadline = min(deadline, running.due)
        return deadline

    async def _step(self, event: Event) -> None:
        lifecycle = self.lifecycle
        if isinstance(event, Tick):
            self._run_due_periodics(event.now)
            self._hand_inbound()
        try:
            effects = lifecycle.handle(event)
        except TransitionRefused as refused:
            # A current-generation task reported something its state has no edge for
            # (say, a crash in FAILED): report it, keep driving.
            logger.warning("dropped %s: %s", type(event).__name__, refused)
            return
        await self.execute(effects)
        self._changed.notify()  # waiters re-check what the event may have changed

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
                self._changed.notify()
            # ScheduleTimer / CancelTimer: next_deadline() already reflects them.

    def _start(self, name: str, generation: int) -> None:
        body = self.bodies[name]
        running = _Running(generation)
        self._running[name] = running
        if isinstance(body, Periodic):
            running.due = self.clock() + body.delay()
        elif not isinstance(body, OnDemand) or body.pending():
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
            await self.post(Failed(self.clock(), running.generation,
                                   self._classify_crash(exc)))
        finally:
            running.finished = True
            running.scope = None
            if isinstance(body, Periodic) and self._running.get(name) is running:
                running.due = self.clock() + body.delay()
            self._changed.notify()

    async def _cancel(self, name: str) -> None:
        running = self._running.pop(name, None)
        if running is None or running.scope is None:
            return  # a Periodic/OnDemand between runs, or a task that already returned
        running.scope.cancel()
        with anyio.move_on_after(self.join_timeout, shield=True):
            while not running.finished:
                await self._changed.wait()
        if not running.finished:
            self.stuck_tasks += 1
            logger.error("task %s did not finish within %.3g s of its cancellation",
                         name, self.join_timeout)
