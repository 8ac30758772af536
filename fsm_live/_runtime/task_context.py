"""What a task of a spec's own is given: :class:`TaskContext` (public as
``fsm_live.TaskContext``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsm_live._runtime.link import Phase
from fsm_live.core.events import TriggerFired
from fsm_live.transport.base import Message

if TYPE_CHECKING:
    from fsm_live._runtime.engine import Engine

__all__ = ("TaskContext",)


class TaskContext:
    """What a task of the spec's own (``async func(context)``, bound in a Registry)
    is given.

    It runs while its state lasts (cancelled, and joined, on leaving it).
    :meth:`send` writes a frame on the open link at once (the delivery ledger is not
    used: a task such as a subscription runs before the application's sends flow,
    and is started again with its state after a reconnect); :meth:`fire` fires one
    of the spec's triggers, as of this task's state (ignored once the connection
    has left it).
    """

    __slots__ = ("_engine", "generation", "task")

    def __init__(self, engine: Engine, task: str, generation: int) -> None:
        self._engine = engine
        #: The task's name in the spec.
        self.task = task
        #: The state entry it runs for (its reports are dropped once that is left).
        self.generation = generation

    def __repr__(self) -> str:
        return f"<TaskContext {self.task} generation={self.generation}>"

    @property
    def state(self) -> str:
        """The connection's current state."""
        return self._engine.lifecycle.state

    def send(self, frame: Message) -> bool:
        """Send ``frame`` (text or bytes, as the protocol frames it) now; False if no
        link is open (the frame is not sent)."""
        engine, link = self._engine, self._engine.link
        if link is None or link.phase != Phase.OPEN:
            return False
        link.send(frame)
        engine.counters.messages_out += 1
        return True

    def fire(self, trigger: str, reason: str = "") -> None:
        """Fire ``trigger`` (say ``subscribed``); refused or stale triggers are dropped."""
        engine = self._engine
        engine._report(TriggerFired(engine.clock(), self.generation, trigger, reason))
