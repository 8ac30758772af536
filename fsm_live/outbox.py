"""The outbound buffer: bounded, ordered, flushed by the connection's flush task."""

from __future__ import annotations

from collections import deque

import anyio

from fsm_live.errors import BufferFull
from fsm_live.transport.base import Message

__all__ = ("Outbox",)


class Outbox:
    """Frames waiting to be sent, oldest first, at most ``capacity`` of them.

    :meth:`put` raises :class:`BufferFull` at the bound (never a silent drop).  The
    flush task :meth:`peek`\\ s the oldest frame, sends it, then :meth:`pop`\\ s it,
    so a frame whose send failed or was cancelled is sent again after reconnecting
    (at-least-once).
    """

    __slots__ = ("_frames", "_not_empty", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: deque[Message] = deque()
        self._not_empty = anyio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: Message) -> None:
        """Append a frame; raises :class:`BufferFull` when ``capacity`` are waiting."""
        if len(self._frames) >= self.capacity:
            raise BufferFull(f"the outbound buffer holds its maximum of {self.capacity} messages")
        self._frames.append(frame)
        self._not_empty.set()

    async def peek(self) -> Message:
        """The oldest frame, waiting until there is one; it stays in the buffer."""
        while not self._frames:
            if self._not_empty.is_set():
                self._not_empty = anyio.Event()
            await self._not_empty.wait()
        return self._frames[0]

    def pop(self) -> None:
        """Remove the oldest frame (after it was sent)."""
        self._frames.popleft()

    def clear(self) -> int:
        """Drop every waiting frame; return how many."""
        dropped = len(self._frames)
        self._frames.clear()
        return dropped
