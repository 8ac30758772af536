"""The delivery ledger: what happened to every frame ``send()`` accepted, sans-I/O.

docs/architecture.md, rule 10: a frame ``send()`` accepted is never dropped
silently.  Each outbound frame the driver could not hand to the operating
system at once is an :class:`Entry` here, in the order it was sent, in one of
these states::

    QUEUED ──written()──► WRITTEN ──confirm()──► SENT ──acknowledge()──► done
       ▲                     │                     │ (no ack awaited: done at once)
       └──── link_lost() ────┴─────────────────────┘ (ack awaited: sent again)

* QUEUED: waiting for a link (not connected, or behind older queued frames);
  :meth:`Ledger.pending` yields them oldest first, for the driver to write.
* WRITTEN: handed to link ``link``, whose bytes up to ``end`` include it, but
  still in the driver's write buffer.  :meth:`Ledger.confirm` moves every frame
  the operating system took on (whose ``end`` it passed) on.
* SENT: left the process; kept only while an acknowledgement is awaited (a
  protocol that acknowledges: lwp by ``mid``, json by a configured key).
* done: confirmed (no ack awaited), acknowledged, or expired (its deadline
  passed first: :meth:`Ledger.expire` hands it back so its sender hears of it).

When a link breaks (:meth:`Ledger.link_lost`), frames still WRITTEN on it, and
frames SENT on it whose acknowledgement has not come, become QUEUED again, in
their original order: the next link gets them first, so order holds.  A frame
the operating system took is not sent again unless it awaits an ack: TCP can
lose it with the link, and only an acknowledgement tells (at-least-once needs
a protocol that acknowledges; with one, a frame may arrive twice and keeps its
id, for the peer to de-duplicate).

:meth:`Ledger.queue` raises :class:`~fsm_live.errors.BufferFull` once
``capacity`` frames are live (QUEUED, WRITTEN or awaiting an ack): the bound
is explicit, never a silent drop.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Hashable, Iterator
from typing import Final

from fsm_live.errors import BufferFull

__all__ = ("DONE", "QUEUED", "SENT", "WRITTEN", "Entry", "Ledger")

QUEUED: Final = 0
WRITTEN: Final = 1
SENT: Final = 2
DONE: Final = 3

_STATE_NAMES: Final = ("queued", "written", "sent", "done")
#: The shared empty deque every ledger starts with (never appended to).
_EMPTY: Final[deque[Entry]] = deque(maxlen=0)


class Entry:
    """One outbound frame in the ledger.

    ``frame`` is what the protocol encoded (text or bytes); ``ack_id`` the id an
    acknowledgement will carry (None: none awaited); ``deadline`` when it is given
    up if still not acknowledged (``math.inf``: never); ``handle`` the driver's
    own value (a request's waiter), returned untouched.
    """

    __slots__ = ("ack_id", "deadline", "end", "frame", "handle", "link", "state")

    def __init__(
        self, frame: str | bytes, ack_id: Hashable | None, deadline: float, handle: object
    ) -> None:
        self.frame = frame
        self.ack_id = ack_id
        self.deadline = deadline
        self.handle = handle
        self.state: int = QUEUED
        self.link = -1  # the link it was last written on
        self.end = 0  # that link's byte count once it was written

    def __repr__(self) -> str:
        return f"<Entry {_STATE_NAMES[self.state]} ack_id={self.ack_id!r} link={self.link}>"


class Ledger:
    """The outbound frames of one connection that are not done yet, oldest first."""

    __slots__ = (
        "_acks",
        "_deadlines",
        "_entries",
        "_queued",
        "_seq",
        "_written",
        "capacity",
        "live",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        #: Entries not done (QUEUED, WRITTEN, or SENT awaiting an ack).
        self.live = 0
        self._queued = 0
        # Made at first use: a connection whose frames all leave at once never needs
        # them (an empty deque is 760 bytes; thousands of idle connections hold these).
        self._entries: deque[Entry] = _EMPTY  # send order; done ones removed lazily
        self._written: deque[Entry] = _EMPTY  # WRITTEN, in byte order on the current link
        self._acks: dict[Hashable, Entry] = {}
        self._deadlines: list[tuple[float, int, Entry]] = []  # a heap, removed lazily
        self._seq = 0

    def __len__(self) -> int:
        return self.live

    def __repr__(self) -> str:
        return f"<Ledger live={self.live} queued={self._queued} written={len(self._written)}>"

    @property
    def has_queued(self) -> bool:
        """True while some frame waits for a link (a new frame must queue behind it)."""
        return self._queued > 0

    @property
    def has_written(self) -> bool:
        """True while some frame is in the driver's write buffer (see :meth:`confirm`)."""
        return bool(self._written)

    @property
    def awaiting_ack(self) -> int:
        """Frames awaiting their acknowledgement (in any state)."""
        return len(self._acks)

    def check_room(self) -> None:
        """Raise :class:`BufferFull` if ``capacity`` frames are live."""
        if self.live >= self.capacity:
            raise BufferFull(
                f"the outbound buffer holds its maximum of {self.capacity} messages "
                "(waiting for a link, in the write buffer, or awaiting an acknowledgement)"
            )

    # -- inputs ------------------------------------------------------------------------

    def queue(
        self,
        frame: str | bytes,
        *,
        ack_id: Hashable | None = None,
        deadline: float = math.inf,
        handle: object = None,
    ) -> Entry:
        """A new QUEUED entry, after every live one.  Raises :class:`BufferFull` at
        ``capacity``, and ValueError for an ``ack_id`` already awaited."""
        self.check_room()
        if ack_id is not None and ack_id in self._acks:
            raise ValueError(f"a frame with ack id {ack_id!r} is already awaiting its ack")
        entry = Entry(frame, ack_id, deadline, handle)
        if self._entries is _EMPTY:
            self._entries = deque()
        self._entries.append(entry)
        self.live += 1
        self._queued += 1
        if ack_id is not None:
            self._acks[ack_id] = entry
        if deadline != math.inf:
            self._seq += 1
            heapq.heappush(self._deadlines, (deadline, self._seq, entry))
        return entry

    def pending(self) -> Iterator[Entry]:
        """The QUEUED entries, oldest first (the driver writes them, calling
        :meth:`written` for each; it may stop early)."""
        if not self._queued:
            return
        for entry in list(self._entries):
            if entry.state == QUEUED:
                yield entry

    def written(self, entry: Entry, link: int, end: int) -> None:
        """``entry`` was handed to link ``link``, whose written byte count is now ``end``."""
        if entry.state == QUEUED:
            self._queued -= 1
        entry.state = WRITTEN
        entry.link = link
        entry.end = end
        if self._written is _EMPTY:
            self._written = deque()
        self._written.append(entry)

    def confirm(self, link: int, offset: int) -> None:
        """Link ``link``'s first ``offset`` bytes left the process: its frames up to
        there are SENT (kept while an ack is awaited) or done."""
        written = self._written
        while written:
            entry = written[0]
            if entry.link != link or entry.end > offset:
                break
            written.popleft()
            if entry.state != WRITTEN:  # expired or acknowledged meanwhile
                continue
            if entry.ack_id is None:
                self._done(entry)
            else:
                entry.state = SENT

    def acknowledge(self, ack_id: Hashable) -> Entry | None:
        """The peer acknowledged ``ack_id``: the entry is done; returns it, or None if no
        live frame awaits that id (an ack of nothing we sent, or of an expired one)."""
        entry = self._acks.pop(ack_id, None)
        if entry is None:
            return None
        if entry.state == QUEUED:
            self._queued -= 1  # acknowledged before it was sent again: not sent again
        self._done(entry)
        return entry

    def link_lost(self, link: int) -> int:
        """Link ``link`` broke: its frames not yet taken by the operating system, and
        those sent on it still awaiting an ack, are QUEUED again (in order).  Returns
        how many will be sent again."""
        again = 0
        for entry in self._entries:
            if entry.link == link and (
                entry.state == WRITTEN or (entry.state == SENT and entry.ack_id is not None)
            ):
                entry.state = QUEUED
                self._queued += 1
                again += 1
        if self._written:
            self._written = deque(e for e in self._written if e.link != link)
        return again

    def expire(self, now: float) -> list[Entry]:
        """Give up the live entries whose deadline is at or before ``now``; return them
        (oldest deadline first) so their senders hear of it."""
        expired: list[Entry] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, entry = heapq.heappop(deadlines)
            if entry.state == DONE:
                continue
            if entry.state == QUEUED:
                self._queued -= 1
            if entry.ack_id is not None:
                self._acks.pop(entry.ack_id, None)
            self._done(entry)
            expired.append(entry)
        return expired

    def next_deadline(self) -> float:
        """The earliest live entry's deadline (``math.inf``: none)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].state == DONE:
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else math.inf

    def drain(self) -> list[Entry]:
        """Every live entry, oldest first, and forget them (the connection closed)."""
        left = [entry for entry in self._entries if entry.state != DONE]
        for entry in left:
            entry.state = DONE
        self._entries = self._written = _EMPTY
        self._acks.clear()
        self._deadlines.clear()
        self.live = self._queued = 0
        return left

    # -- internals ---------------------------------------------------------------------

    def _done(self, entry: Entry) -> None:
        entry.state = DONE
        self.live -= 1
        entries = self._entries
        while entries and entries[0].state == DONE:
            entries.popleft()
        if len(entries) > 2 * self.live + 64:
            # Done entries behind a live one (an ack that is late): compact, amortised.
            self._entries = deque(e for e in entries if e.state != DONE)
