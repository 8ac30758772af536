"""Workers beyond one process: which worker holds which account, at most one at a time.

A :class:`~fsm_live.fleet.Fleet` is given a :class:`Coordinator`.  The default,
:class:`LocalCoordinator`, holds every account in this process; the
:class:`EtcdCoordinator` shares the accounts among workers (processes, on one
host or many) through etcd, with at most one live session per account: claims
on the worker's lease fenced by revision, self-fencing on the worker's own
clock, abortive closes at the fence, handovers that close before they hand
over.  See docs/cluster.md.

Rooms: :mod:`~fsm_live.cluster.hashing` (capacity-weighted rendezvous),
:mod:`~fsm_live.cluster.placement` (the sans-I/O view and its decisions),
:mod:`~fsm_live.cluster.ownership` (fences and ownerships),
:mod:`~fsm_live.cluster.coordinator` (the seam, the in-process coordinator),
:mod:`~fsm_live.cluster.etcd` (the etcd coordinator; ``fsm_live[cluster]``).
"""

from __future__ import annotations

from fsm_live.cluster.clock import CLOCK_NAME, boottime
from fsm_live.cluster.coordinator import (
    Coordinator,
    CoordinatorError,
    Holder,
    HoldRecord,
    LocalCoordinator,
    MemberView,
)
from fsm_live.cluster.etcd import EtcdCoordinator
from fsm_live.cluster.hashing import place, rendezvous_owner
from fsm_live.cluster.keys import DEFAULT_PREFIX, KeyLayout, MemberInfo
from fsm_live.cluster.ownership import Fence, Ownership
from fsm_live.cluster.settings import ClusterSettings
from fsm_live.cluster.url import CoordinatorUrl

__all__ = (
    "CLOCK_NAME",
    "DEFAULT_PREFIX",
    "ClusterSettings",
    "Coordinator",
    "CoordinatorError",
    "CoordinatorUrl",
    "EtcdCoordinator",
    "Fence",
    "HoldRecord",
    "Holder",
    "KeyLayout",
    "LocalCoordinator",
    "MemberInfo",
    "MemberView",
    "Ownership",
    "boottime",
    "place",
    "rendezvous_owner",
)
