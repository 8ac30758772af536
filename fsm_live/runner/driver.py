"""Running a user's spec on the user's object under anyio (asyncio or trio).

:class:`Runner` is the spec and its registry, built once (one Machine per spec
and registry); ``async with runner.run(subject) as machine`` runs one
:class:`~fsm_live.runner.UserRun` and carries out its effects:

* the spec's **timers** run on the event loop's clock (``anyio.current_time``:
  trio's ``MockClock`` makes them virtual in tests), one wake-up for the
  earliest deadline;
* its **tasks** (``async func(context)``) run in the run's task group, each
  under its own cancel scope: started on entering their state, cancelled on
  leaving it, and joined by the task group (rule 3).  A task fires triggers
  with ``context.fire(...)``, a report tagged with its generation: dropped once
  its state was left (rule 4), so a task never cancels and awaits itself (rule 1).
  A task that raises ends the run; ``async with`` raises it (in an
  ``ExceptionGroup``, as anyio's task groups do);
* its **guards and actions** run inside :meth:`RunningMachine.fire`, with the
  user's object and their declared arguments.

Leaving the ``async with`` block cancels the tasks and timers and waits for the
tasks; it is not a transition (no exit action runs).  An exception of the block
goes on unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup

from fsm_live.core.effects import CancelTask, Effect, Emit, StartTask, TransitionRecord
from fsm_live.errors import UsageError
from fsm_live.runner.run import RunMachine, UserRun, run_machine
from fsm_live.spec import Registry, Spec

__all__ = ("Runner", "RunningMachine", "TaskContext")

#: Called with each transition taken (a :class:`TransitionRecord`), synchronously.
TransitionCallback = Callable[[TransitionRecord], None]


class Runner:
    """A spec and its registry, ready to run on users' objects.

    ``spec`` is a :class:`Spec` or a path to one.  Raises
    :class:`~fsm_live.errors.SpecError` listing every guard, action, timer or
    task the spec uses that ``registry`` does not bind (or binds to a callable
    that cannot take its call), each ``FILE:LINE: item: message``.  Every run of
    a runner, and of every runner of an equal spec and the same registry, shares
    one Machine.
    """

    __slots__ = ("machine",)

    def __init__(self, spec: Spec | str | Path, registry: Registry) -> None:
        spec = spec if isinstance(spec, Spec) else Spec.from_path(spec)
        self.machine: RunMachine = run_machine(spec, registry)

    @property
    def spec(self) -> Spec:
        return self.machine.spec

    def run(
        self, subject: Any, *, on_transition: TransitionCallback | None = None
    ) -> RunningMachine:
        """A machine running the spec on ``subject``; enter it with ``async with``.

        ``on_transition`` is called with every transition taken (internal rows
        included), after its effects were carried out.
        """
        return RunningMachine(self.machine, subject, on_transition)


class TaskContext:
    """What a task of the spec receives: ``async func(context)``.

    ``subject`` is the user's object; ``state`` the run's current state;
    ``generation`` the generation the task was started with.
    """

    __slots__ = ("_machine", "generation", "name")

    def __init__(self, machine: RunningMachine, name: str, generation: int) -> None:
        self._machine = machine
        self.name = name
        self.generation = generation

    @property
    def subject(self) -> Any:
        return self._machine.subject

    @property
    def state(self) -> str:
        return self._machine.state

    @property
    def current(self) -> bool:
        """True while the task's state has not been left since it started."""
        return self._machine.run.generation == self.generation

    def fire(self, trigger: str, **data: Any) -> bool:
        """Report ``trigger`` (with event ``data``) to the run; True if a row was taken.

        Dropped (False) once the task's state was left, or if the state refuses
        the trigger or no row's guards pass.
        """
        return self._machine._report(self.generation, trigger, data)


class RunningMachine:
    """One run of a spec on the user's object: its state, ``fire`` and ``wait_for``.

    Use it as an async context manager (the runner's :meth:`Runner.run`); entering
    it starts the run: the initial state's entry actions run, its timers are armed
    and its tasks started.  Not thread-safe: call it from the event loop's thread.
    """

    def __init__(
        self, machine: RunMachine, subject: Any, on_transition: TransitionCallback | None
    ) -> None:
        self.run = UserRun(machine, subject)
        self.subject = subject
        self.on_transition = on_transition
        self._task_group: TaskGroup | None = None
        self._scopes: dict[tuple[str, int], anyio.CancelScope] = {}
        self._wake = anyio.Event()
        self._changed = anyio.Event()
        self._closed = False

    def __repr__(self) -> str:
        return f"<RunningMachine {self.run.machine.spec.name} {self.state}>"

    @property
    def state(self) -> str:
        """The current state."""
        return self.run.state

    @property
    def tasks(self) -> frozenset[str]:
        """The tasks running now (a cancelled one until it has finished)."""
        return frozenset(name for name, _ in self._scopes)

    # -- the application's side ---------------------------------------------------------

    def fire(self, trigger: str, **data: Any) -> bool:
        """Fire ``trigger`` with event ``data`` now; True if a row was taken.

        False when the state ignores the trigger or no row's guards pass.  Raises
        :class:`~fsm_live.errors.TransitionRefused` when the state has no row for
        it, :class:`~fsm_live.errors.UsageError` outside ``async with`` or from a
        guard or action of this run.
        """
        if self._task_group is None or self._closed:
            raise UsageError(f"{self!r}: fire({trigger!r}) outside `async with`")
        return self._carry_out(self.run.fire(trigger, anyio.current_time(), **data))

    async def wait_for(self, state: str) -> None:
        """Return once the machine is in ``state`` (at once if it is).  Raises
        ``KeyError`` for a state the spec does not have."""
        if state not in self.run.machine.states:
            raise KeyError(state)
        while self.run.state != state:
            await self._changed.wait()

    # -- lifetime ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise UsageError(f"{self!r} is entered twice")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            self._carry_out(self.run.start(anyio.current_time()))
            task_group.start_soon(self._timers)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self._closed = True
        task_group = self._task_group
        assert task_group is not None
        task_group.cancel_scope.cancel()  # the tasks and the timer wait; joined below
        # The block's own exception goes on as it is (not wrapped in a group); a
        # task's raises from here, in the task group's ExceptionGroup.
        await task_group.__aexit__(None, None, None)
        return None

    # -- the one place that carries out effects ----------------------------------------

    def _report(self, generation: int, trigger: str, data: dict[str, Any]) -> bool:
        if self._closed:
            return False
        return self._carry_out(self.run.report(generation, trigger, anyio.current_time(), **data))

    def _carry_out(self, effects: list[Effect]) -> bool:
        taken = False
        task_group = self._task_group
        assert task_group is not None
        for effect in effects:
            if isinstance(effect, StartTask):
                scope = anyio.CancelScope()
                self._scopes[(effect.task, effect.generation)] = scope
                task_group.start_soon(self._task, effect.task, effect.generation, scope)
            elif isinstance(effect, CancelTask):
                found = self._scopes.get((effect.task, effect.generation))
                if found is not None:
                    found.cancel()
            elif isinstance(effect, Emit):
                taken = True
                self._changed.set()
                self._changed = anyio.Event()
                if self.on_transition is not None:
                    self.on_transition(effect.record)
        self._wake.set()  # deadlines may have moved: the timer wait recomputes
        return taken

    async def _task(self, name: str, generation: int, scope: anyio.CancelScope) -> None:
        registry = self.run.machine.registry
        assert registry is not None
        func = registry.lookup("task", name)
        try:
            with scope:
                await func(TaskContext(self, name, generation))
        finally:
            del self._scopes[(name, generation)]

    async def _timers(self) -> None:
        while True:
            deadline = self.run.next_deadline()
            with anyio.move_on_after(math.inf) if deadline is None else anyio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = anyio.Event()
            now = anyio.current_time()
            due = self.run.next_deadline()
            if due is not None and due <= now:
                self._carry_out(self.run.handle_timer(now))
