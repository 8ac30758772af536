"""Work that must await, as tasks the connection owns.

The engine is synchronous; what has to wait on something else (a TCP connect, a
credentials provider, the escalation hook, the application's message handlers,
the reader and writer of a byte stream on trio) runs as a :class:`Job`, started
from any code on the event loop's thread (protocol callbacks included).  A job
reports its own failures; an exception escaping one is a bug, logged and handed
to the connection (``on_crash``).  Cancelling a job stops it at its next
checkpoint; what a cancelled job still reports is dropped by its generation
(docs/architecture.md, rule 4), and every job is joined before the connection is
left (rule 3), so none outlives it.

Two ways to run them, the same guarantees:

* in an anyio task group (:meth:`Jobs.bind`): trio, and any backend but asyncio;
* on asyncio, as asyncio tasks the connection owns directly (:meth:`Jobs.own`),
  cancelled and joined by :meth:`Jobs.join`.  An idle connection then holds no
  task group at all: about 2.5 KiB less per connection (bench/memprofile.py),
  which is what thousands of idle connections are made of.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

__all__ = ("Job", "Jobs")

logger = logging.getLogger("fsm_live")

#: Owned tasks before the first job (shared, never added to: an idle connection with
#: a set of its own would hold 216 bytes for nothing).
_NO_TASKS: frozenset[asyncio.Task[None]] = frozenset()


class Job:
    """One running piece of work; :meth:`cancel` stops it at its next checkpoint."""

    __slots__ = ("_cancel", "done", "generation", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = False
        #: The lifecycle generation the job works for (-1: none in particular).
        self.generation = -1
        self._cancel: Callable[[], Any] | None = None

    def cancel(self) -> None:
        """Cancel the job (a no-op once it is done)."""
        if not self.done and self._cancel is not None:
            self._cancel()

    def __repr__(self) -> str:
        return f"<Job {self.name}{' done' if self.done else ''}>"


class Jobs:
    """Starts jobs, counts those alive, and joins them.

    ``on_crash(job, exc)`` is called when a job raises anything but a
    cancellation; ``on_done()`` after any job ended.
    """

    __slots__ = ("_task_group", "_tasks", "alive", "on_crash", "on_done")

    def __init__(
        self, on_crash: Callable[[Job, Exception], None], on_done: Callable[[], None]
    ) -> None:
        self._task_group: anyio.abc.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] | frozenset[asyncio.Task[None]] | None = None
        self.alive = 0
        self.on_crash = on_crash
        self.on_done = on_done

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run jobs in ``task_group`` (the connection's, entered by ``async with``)."""
        self._task_group = task_group

    def own(self) -> None:
        """Run jobs as asyncio tasks owned here (on asyncio; :meth:`join` them)."""
        self._tasks = _NO_TASKS  # a set of its own from the first job

    def start(self, name: str, work: Callable[..., Awaitable[Any]], *args: Any) -> Job:
        """Run ``work(*args)`` as a new job; return its handle."""
        job = Job(name)
        self.alive += 1
        if self._tasks is not None:
            tasks = self._tasks = self._tasks if isinstance(self._tasks, set) else set()
            task = asyncio.get_running_loop().create_task(
                self._run_task(job, work, args), name=f"fsm_live:{name}"
            )
            tasks.add(task)
            # Counted out by the task's end, not in it: a task cancelled before it ran
            # never runs a line of its coroutine.
            task.add_done_callback(lambda task: self._owned_ended(task, job))
            job._cancel = task.cancel
            return job
        assert self._task_group is not None, "Jobs.bind() or Jobs.own() first"
        scope = anyio.CancelScope()
        job._cancel = scope.cancel
        self._task_group.start_soon(self._run, job, scope, work, args, name=f"fsm_live:{name}")
        return job

    async def join(self, grace: float, margin: float) -> None:
        """Wait up to ``grace`` seconds for the owned tasks to end, then cancel those
        left and wait up to ``margin`` more (the task group's exit does this for
        bound jobs).  Shielded: a cancelled caller still joins.  A task still alive
        after that is reported."""
        tasks = self._tasks
        if not tasks:
            return
        with anyio.CancelScope(shield=True):
            _, pending = await asyncio.wait(set(tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                _, stuck = await asyncio.wait(pending, timeout=margin)
                for task in stuck:
                    logger.error("fsm_live job %s did not end when cancelled", task.get_name())

    async def _run_task(
        self, job: Job, work: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            await work(*args)
        except Exception as exc:
            self._crashed(job, exc)

    def _owned_ended(self, task: asyncio.Task[None], job: Job) -> None:
        tasks = self._tasks
        assert isinstance(tasks, set)
        tasks.discard(task)
        if not tasks:
            self._tasks = _NO_TASKS  # an idle connection keeps no empty set
        self._ended(job)

    async def _run(
        self,
        job: Job,
        scope: anyio.CancelScope,
        work: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
    ) -> None:
        try:
            with scope:
                await work(*args)
        except Exception as exc:
            self._crashed(job, exc)
        finally:
            self._ended(job)

    def _crashed(self, job: Job, exc: Exception) -> None:
        logger.exception("fsm_live job %s crashed", job.name, exc_info=exc)
        self.on_crash(job, exc)

    def _ended(self, job: Job) -> None:
        job.done = True
        self.alive -= 1
        self.on_done()
