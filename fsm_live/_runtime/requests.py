"""A request awaiting its acknowledgement: what ``LiveConnection.request()`` waits on.

The delivery ledger (:mod:`fsm_live.core.ledger`) keeps the frame until the peer
acknowledges it (sending it again after a reconnect); its entry's ``handle`` is
a :class:`PendingRequest`, which the engine resolves with the peer's answer, or
fails with :class:`~fsm_live.errors.RequestTimeout` at its deadline or
:class:`~fsm_live.errors.ConnectionClosed` when the connection closes first.
"""

from __future__ import annotations

from typing import Any

import anyio

__all__ = ("PendingRequest",)


class PendingRequest:
    """One request's outcome: its answer, or the error its sender gets."""

    __slots__ = ("_done", "answer", "error")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.answer: Any = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        """True once answered or failed."""
        return self._done.is_set()

    def resolve(self, answer: Any) -> None:
        """The peer acknowledged it with ``answer`` (a no-op once done)."""
        if not self.done:
            self.answer = answer
            self._done.set()

    def fail(self, error: BaseException) -> None:
        """It will not be acknowledged: the sender gets ``error`` (a no-op once done)."""
        if not self.done:
            self.error = error
            self._done.set()

    async def wait(self) -> Any:
        """The answer; raises the error it failed with."""
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.answer
