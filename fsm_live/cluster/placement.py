"""What a worker knows of its cluster and what it should do about it (sans-I/O).

A :class:`ClusterView` is fed what etcd says (members and owner keys, from a
snapshot and then the watch) and what the fleet wants (its accounts), with
explicit ``now`` values; it answers which accounts to claim and which to hand
over.  It never sleeps nor talks to etcd, so its rules are tested without one:

* an account belongs on the live, non-draining member of the highest
  capacity-weighted rendezvous score (:mod:`fsm_live.cluster.hashing`);
* claim only an account whose owner key is absent, once its handover delay has
  passed: none after a live owner released it (it closed its session first:
  revoke before assign), ``handover_delay`` after an owner's key went with its
  lease (that owner may be paused or cut off, not dead);
* hand over an account this worker's lease holds when it belongs elsewhere, is
  no longer an account, or the worker drains; a key of this lease without a
  session here (left by a failed release) is deleted too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from fsm_live.cluster.hashing import key_hash, owner_of
from fsm_live.cluster.keys import MemberInfo

__all__ = ("ClusterView", "OwnerKey")


@attrs.frozen
class OwnerKey:
    """An owner key as etcd has it: the holder's id, the create revision (fencing
    token) and the lease it is on."""

    worker: str
    revision: int
    lease: int


class ClusterView:
    """This worker's (``me``) view of members, owners and wanted accounts."""

    def __init__(self, me: str, *, handover_delay: float) -> None:
        self.me = me
        self.handover_delay = handover_delay
        self.lease = 0  # this worker's current lease (0: none)
        self._draining = False
        self.members: dict[str, MemberInfo] = {}
        self.owners: dict[str, OwnerKey] = {}
        self._ours: set[str] = set()  # accounts whose owner key is on this worker's lease
        self.wanted: dict[str, None] = {}  # ordered: claims go in the order accounts came
        self._unowned: dict[str, None] = {}  # wanted, without an owner key: claim candidates
        self._held: set[str] = set()  # accounts with a session here (the coordinator's)
        # What to_release looks at: every account of ours after a change of members or
        # of draining, else only those touched since the last look.
        self._recheck = True
        self._suspects: set[str] = set()
        self._free_at: dict[str, float] = {}  # account -> earliest claim
        self._targets: dict[str, str | None] = {}
        self._placement: list[tuple[int, str, float]] | None = None
        self.members_changed_at = -math.inf
        self.joined_at = -math.inf  # the latest snapshot

    # -- what this worker does -------------------------------------------------------

    @property
    def draining(self) -> bool:
        """Whether this worker hands everything over and takes nothing."""
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        self._recheck = True

    @property
    def held(self) -> frozenset[str]:
        """Accounts with a session here."""
        return frozenset(self._held)

    def hold(self, account: str) -> None:
        self._held.add(account)
        self._suspects.add(account)

    def unhold(self, account: str) -> None:
        self._held.discard(account)
        self._suspects.add(account)

    # -- what etcd says ---------------------------------------------------------------

    def reset(self, members: Iterable[MemberInfo], owners: dict[str, OwnerKey], now: float) -> None:
        """A fresh snapshot (a join or a resync): the previous view is forgotten.
        Accounts without an owner key are claimable after ``handover_delay`` (an
        owner may have just lost its lease)."""
        self.members = {member.worker: member for member in members}
        self.owners = dict(owners)
        self._ours = {a for a, o in owners.items() if self.lease != 0 and o.lease == self.lease}
        self._recheck = True
        self.joined_at = now
        self._unowned = {account: None for account in self.wanted if account not in owners}
        self._free_at = dict.fromkeys(self.wanted, now + self.handover_delay)
        self._members_changed(now)

    def member_put(self, member: MemberInfo, now: float) -> None:
        old = self.members.get(member.worker)
        self.members[member.worker] = member
        if old is None or (old.capacity, old.draining) != (member.capacity, member.draining):
            self._members_changed(now)

    def member_deleted(self, worker: str, now: float) -> None:
        if self.members.pop(worker, None) is not None:
            self._members_changed(now)

    def owner_put(self, account: str, owner: OwnerKey) -> None:
        self.owners[account] = owner
        self._unowned.pop(account, None)
        self._free_at.pop(account, None)
        if self.lease != 0 and owner.lease == self.lease:
            self._ours.add(account)
            self._suspects.add(account)
        else:
            self._ours.discard(account)

    def owner_deleted(self, account: str, now: float) -> OwnerKey | None:
        """The owner key went; returns what it was.  Call after the members of the
        same revision were applied: an owner that is still a member released it."""
        old = self.owners.pop(account, None)
        self._ours.discard(account)
        if account in self.wanted:
            self._unowned[account] = None
        deliberate = old is not None and old.worker in self.members
        self._free_at[account] = now if deliberate else now + self.handover_delay
        return old

    # -- what the fleet wants ---------------------------------------------------------

    def want(self, account: str, now: float) -> None:
        """``account`` is wanted; unowned, it is claimable ``handover_delay`` after the
        latest snapshot at the earliest (its owner may have lost its lease just before)."""
        self.wanted[account] = None
        if account not in self.owners:
            self._unowned[account] = None
        self._free_at.setdefault(account, max(now, self.joined_at + self.handover_delay))

    def unwant(self, account: str) -> None:
        self.wanted.pop(account, None)
        self._suspects.add(account)
        self._unowned.pop(account, None)
        self._targets.pop(account, None)

    # -- decisions --------------------------------------------------------------------

    def _members_table(self) -> list[tuple[int, str, float]]:
        """The live, non-draining members as the hashing wants them (rebuilt after a
        change of members, which forgets every computed place)."""
        if self._placement is None:
            self._placement = sorted(
                (key_hash(worker), worker, member.capacity)
                for worker, member in self.members.items()
                if not member.draining
            )
            self._targets = {}
        return self._placement

    def target(self, account: str) -> str | None:
        """The member ``account`` belongs on (None: no live, non-draining member)."""
        table = self._members_table()
        try:
            return self._targets[account]
        except KeyError:
            target = self._targets[account] = owner_of(key_hash(account), table)
            return target

    def unplaced(self) -> list[str]:
        """The accounts :meth:`to_claim` and :meth:`to_release` will place whose place
        is not computed yet (after a change of members: all of them)."""
        self._members_table()
        targets = self._targets
        candidates = [*self._unowned, *(self._ours if self._recheck else self._suspects)]
        return [account for account in candidates if account not in targets]

    def mine(self, account: str) -> bool:
        """Whether ``account``'s owner key is on this worker's current lease."""
        owner = self.owners.get(account)
        return owner is not None and self.lease != 0 and owner.lease == self.lease

    def to_claim(self, now: float, busy: set[str]) -> tuple[list[str], float | None]:
        """Accounts to claim now (not in ``busy``), and when the next one becomes
        claimable (None: no other is waiting)."""
        if self.draining or self.lease == 0:
            return [], None
        claim: list[str] = []
        later = math.inf
        for account in self._unowned:
            if account in busy or self.target(account) != self.me:
                continue
            free_at = self._free_at.get(account, now)
            if free_at <= now:
                claim.append(account)
            else:
                later = min(later, free_at)
        return claim, (None if later == math.inf else later)

    def to_release(self, busy: set[str]) -> list[str]:
        """Accounts on this worker's lease to hand over (not in ``busy``: those are
        looked at again next time)."""
        if self.lease == 0:
            return []
        candidates = self._ours if self._recheck else self._suspects & self._ours
        self._recheck, self._suspects = False, set()
        release = []
        for account in candidates:
            if account in busy:
                self._suspects.add(account)
            elif (
                self._draining
                or account not in self._held
                or account not in self.wanted
                or self.target(account) not in (self.me, None)
            ):
                release.append(account)
        return release

    def counts(self) -> dict[str, int]:
        """Accounts per owner worker, as the owner keys say."""
        counts: dict[str, int] = {}
        for owner in self.owners.values():
            counts[owner.worker] = counts.get(owner.worker, 0) + 1
        return counts

    def _members_changed(self, now: float) -> None:
        self._placement = None
        self._recheck = True
        self.members_changed_at = now
