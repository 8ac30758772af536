"""Work that must await, as anyio tasks of the connection's task group.

The engine is synchronous; what has to wait on something else (a TCP connect, a
credentials provider, the escalation hook, the application's message handlers,
the reader and writer of a byte stream on trio) runs as a :class:`Job`: an anyio
task started with ``TaskGroup.start_soon`` (which works from any code on the
event loop's thread, protocol callbacks included) under a cancel scope of its
own.  Cancelling a job cancels that scope; the task group joins every job when
the connection closes, so none outlives it (docs/architecture.md, rule 3), and what a
cancelled job still reports is dropped by its generation (rule 4).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

__all__ = ("Job", "Jobs")

logger = logging.getLogger("fsm_live")


class Job:
    """One running piece of work; :meth:`cancel` stops it at its next checkpoint."""

    __slots__ = ("done", "generation", "name", "scope")

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = anyio.CancelScope()
        self.done = False
        #: The lifecycle generation the job works for (-1: none in particular).
        self.generation = -1

    def cancel(self) -> None:
        """Cancel the job (a no-op once it is done)."""
        self.scope.cancel()

    def __repr__(self) -> str:
        return f"<Job {self.name}{' done' if self.done else ''}>"


class Jobs:
    """Starts jobs in a task group and counts those alive.

    ``on_crash(job, exc)`` is called when a job raises anything but a
    cancellation: a job must report its own failures, so an exception escaping
    one is a bug, logged here and handed to the connection to fail over.
    ``on_done()`` is called after any job ended.
    """

    __slots__ = ("_task_group", "alive", "on_crash", "on_done")

    def __init__(
        self, on_crash: Callable[[Job, Exception], None], on_done: Callable[[], None]
    ) -> None:
        self._task_group: anyio.abc.TaskGroup | None = None
        self.alive = 0
        self.on_crash = on_crash
        self.on_done = on_done

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Where jobs run (the connection's task group, entered by ``async with``)."""
        self._task_group = task_group

    def start(self, name: str, work: Callable[..., Awaitable[Any]], *args: Any) -> Job:
        """Run ``work(*args)`` as a new job; return its handle."""
        assert self._task_group is not None, "Jobs.bind() first"
        job = Job(name)
        self.alive += 1
        self._task_group.start_soon(self._run, job, work, args, name=f"fsm_live:{name}")
        return job

    async def _run(
        self, job: Job, work: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            with job.scope:
                await work(*args)
        except Exception as exc:
            logger.exception("fsm_live job %s crashed", job.name)
            self.on_crash(job, exc)
        finally:
            job.done = True
            self.alive -= 1
            self.on_done()
