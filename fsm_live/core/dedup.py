"""De-duplication of inbound message ids: a TTL and a size cap, nothing unbounded."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from fsm_live.errors import ConfigError

__all__ = ("Deduplicator",)


class Deduplicator:
    """Remembers message ids for ``ttl`` seconds, at most ``max_entries`` of them.

    :meth:`seen` answers whether an id is a duplicate and remembers it; when full,
    the oldest id is forgotten first.  :meth:`sweep` drops expired ids (the
    connection's cleanup task calls it); :meth:`seen` never returns True for an
    expired id even before a sweep.  Times are monotonic seconds.
    """

    __slots__ = ("_expiry", "max_entries", "ttl")

    def __init__(self, ttl: float, max_entries: int) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ConfigError("message_expire_time", "ttl must be > 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, message_id: Hashable, now: float) -> bool:
        """True if ``message_id`` was seen within the TTL; otherwise remember it."""
        expiry = self._expiry.get(message_id)
        if expiry is not None and expiry > now:
            return True
        if expiry is not None:
            del self._expiry[message_id]
        elif len(self._expiry) >= self.max_entries:
            self._expiry.popitem(last=False)
        self._expiry[message_id] = now + self.ttl
        return False

    def sweep(self, now: float) -> int:
        """Forget every expired id; return how many were dropped."""
        dropped = 0
        # Ids are kept in insertion order and share one TTL, so expiry is ordered too.
        while self._expiry:
            message_id, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[message_id]
            dropped += 1
        return dropped
