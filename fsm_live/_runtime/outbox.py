"""The outbound buffer: bounded, ordered, drained by the connection's flush task."""

from __future__ import annotations

from collections import deque

from fsm_live._runtime.wakeup import Wakeup
from fsm_live.errors import BufferFull
from fsm_live.transport.base import Message

__all__ = ("Outbox",)


class Outbox:
    """Frames waiting to be sent, oldest first, at most ``capacity`` of them.

    :meth:`put` raises :class:`BufferFull` at the bound (never a silent drop).  The
    flush task :meth:`peek`\\ s the oldest frame, sends it, then :meth:`pop`\\ s it,
    so a frame whose send failed or was cancelled is sent again after reconnecting
    (at-least-once).  The flush task runs on demand (see
    :class:`fsm_live.runner.OnDemand`), asked for by ``LiveConnection.send``; it
    may :meth:`wait_put` a while for more before it returns.
    """

    __slots__ = ("_frames", "_put", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Created by the first put(): a connection that never sends has no deque
        # (760 bytes, even empty).
        self._frames: deque[Message] | None = None
        self._put = Wakeup()

    def __len__(self) -> int:
        return 0 if self._frames is None else len(self._frames)

    def put(self, frame: Message) -> None:
        """Append a frame; raises :class:`BufferFull` when ``capacity`` are waiting."""
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        if len(frames) >= self.capacity:
            raise BufferFull(f"the outbound buffer holds its maximum of {self.capacity} messages")
        frames.append(frame)
        self._put.notify()

    async def wait_put(self) -> None:
        """Return after the next :meth:`put` (the caller checks the buffer again)."""
        await self._put.wait()

    def peek(self) -> Message:
        """The oldest frame; it stays in the buffer.  Raises IndexError when empty."""
        if not self._frames:
            raise IndexError("the outbound buffer is empty")
        return self._frames[0]

    def pop(self) -> None:
        """Remove the oldest frame (after it was sent).  Raises IndexError when empty."""
        if not self._frames:
            raise IndexError("the outbound buffer is empty")
        self._frames.popleft()

    def clear(self) -> int:
        """Drop every waiting frame; return how many."""
        dropped = len(self)
        if self._frames is not None:
            self._frames.clear()
        return dropped
