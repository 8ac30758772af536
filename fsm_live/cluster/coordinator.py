"""The seam between a :class:`~fsm_live.fleet.Fleet` and whoever decides which worker
holds which account.

A fleet is given a :class:`Coordinator` (default: :class:`LocalCoordinator`, this
process holds every account) and is its :class:`Holder`: the coordinator grants
an account with an :class:`~fsm_live.cluster.ownership.Ownership` and the fleet
starts its connection; the coordinator asks for it back and the fleet closes
it.  One code path for one process and for many: the in-process coordinator
grants every account at once and never fences.

Lifecycle, as a fleet drives it::

    await task_group.start(coordinator.run, fleet)   # joined (etcd: lease, member key)
    coordinator.want(key)          # an account added: an Ownership now, or None
                                   # (then holder.acquire(key, ownership) when granted)
    await coordinator.unwant(key)  # removed, after its session was closed
    await coordinator.drain()      # hand every account over, then leave (SIGTERM)
    coordinator.leave()            # run() returns once the holder's sessions stopped

Which worker held which account when is kept as :class:`HoldRecord`\\ s
(:meth:`Coordinator.holds`), and appended to a JSON-lines file when one is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Protocol, TextIO

import anyio
import anyio.abc
import attrs

from fsm_live.cluster.keys import MemberInfo
from fsm_live.cluster.ownership import Fence, Ownership
from fsm_live.errors import FsmLiveError

__all__ = (
    "MAX_HOLDS",
    "Coordinator",
    "CoordinatorError",
    "CoordinatorUnavailable",
    "HoldLog",
    "HoldRecord",
    "Holder",
    "LocalCoordinator",
    "MemberView",
)

#: Hold records a coordinator keeps in memory (the oldest are forgotten first).
MAX_HOLDS: Final = 10_000


class CoordinatorError(FsmLiveError):
    """The coordinator cannot do its part: etcd unreachable when a worker starts, a
    worker id already held by a live worker.  The message names the endpoint."""


class CoordinatorUnavailable(CoordinatorError):
    """A request to the coordinator (etcd) failed or timed out; the message says how
    (gRPC's status name), never a value of ours."""


class Holder(Protocol):
    """What a coordinator drives: the sessions of this worker (a Fleet)."""

    async def acquire(self, key: str, ownership: Ownership) -> None:
        """Start ``key``'s session under ``ownership`` (nothing if ``key`` is not an
        account any more, or ``ownership`` is no longer valid)."""
        ...

    async def release(self, key: str) -> None:
        """Close ``key``'s session (gracefully, bounded); return once it is closed."""
        ...

    def abort(self, key: str) -> None:
        """Close ``key``'s session abortively now (a TCP reset, nothing more sent)."""
        ...

    async def stopped(self) -> None:
        """Return once no session runs any more (the fleet is closing)."""
        ...


@attrs.frozen
class MemberView:
    """A worker of the cluster and how many accounts it holds, as this worker sees it."""

    info: MemberInfo
    accounts: int


@attrs.frozen
class HoldRecord:
    """``worker`` held ``account`` (fencing ``token``) from ``since`` until ``until``
    (wall-clock seconds since the epoch; ``until`` None while held), ended because
    ``ended`` (``released``, ``removed``, ``fenced``, ``lost``, ``closed``)."""

    account: str
    worker: str
    token: int
    since: float
    until: float | None = None
    ended: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "account": self.account,
            "worker": self.worker,
            "token": self.token,
            "since": round(self.since, 6),
            "until": None if self.until is None else round(self.until, 6),
            "ended": self.ended,
        }


class HoldLog:
    """The holds of one worker: those open now, the latest :data:`MAX_HOLDS` closed,
    and optionally a JSON-lines file with one line per hold started or ended
    (``{"event": "held"|"ended", "account", "worker", "token", "since", "until",
    "ended"}``; wall-clock times, for people and other hosts).  OSError of the file
    is raised by the constructor only; a write that fails later is dropped."""

    def __init__(self, path: Path | None = None, *, keep: int = MAX_HOLDS) -> None:
        self._open: dict[str, HoldRecord] = {}
        self._closed: deque[HoldRecord] = deque(maxlen=keep)
        self._file: TextIO | None = None
        if path is not None:
            self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def started(self, ownership: Ownership) -> None:
        record = HoldRecord(ownership.account, ownership.worker, ownership.token, time.time())
        self._open[ownership.account] = record
        self._write("held", record)

    def ended(self, account: str, why: str) -> None:
        record = self._open.pop(account, None)
        if record is None:
            return
        record = attrs.evolve(record, until=time.time(), ended=why)
        self._closed.append(record)
        self._write("ended", record)

    def end_all(self, why: str) -> None:
        for account in list(self._open):
            self.ended(account, why)

    def records(self) -> tuple[HoldRecord, ...]:
        """Closed holds (oldest first), then open ones."""
        return (*self._closed, *self._open.values())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, event: str, record: HoldRecord) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError, ValueError):  # a full disk must not stop the worker
            self._file.write(json.dumps({"event": event, **record.as_json()}) + "\n")


class Coordinator(Protocol):
    """Decides which accounts this worker holds (see the module docstring)."""

    @property
    def worker_id(self) -> str:
        """This worker's id in the cluster."""
        ...

    @property
    def status(self) -> str:
        """``joining``, ``active``, ``fenced``, ``draining`` or ``left``."""
        ...

    async def run(self, holder: Holder, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Join the cluster (``task_status.started()`` once joined), grant and take
        back accounts until :meth:`leave`, then leave it.  Raises
        :class:`CoordinatorError` if it cannot join at first."""
        ...

    def want(self, key: str) -> Ownership | None:
        """``key`` is an account of the fleet: its Ownership if this worker may hold it
        now, else None (the coordinator calls ``holder.acquire`` later, if ever)."""
        ...

    async def unwant(self, key: str) -> None:
        """``key`` is no longer an account; its session (if any) is closed already."""
        ...

    async def drain(self) -> None:
        """Hand every account over to the other workers, paced, then leave."""
        ...

    def leave(self) -> None:
        """Leave once the holder's sessions stopped (no hand-over)."""
        ...

    def members(self) -> tuple[MemberView, ...]:
        """The cluster's workers as known now, by id."""
        ...

    def holds(self) -> tuple[HoldRecord, ...]:
        """Which account this worker held when (see :class:`HoldRecord`)."""
        ...


class LocalCoordinator:
    """Every account held by this process, at once, for as long as it runs.

    The default of :class:`~fsm_live.fleet.Fleet`: ownerships never expire (their
    fence is ``math.inf``); tokens count up from 1.
    """

    def __init__(self, worker_id: str = "local", *, hold_log: Path | None = None) -> None:
        self._worker_id = worker_id
        self._fence = Fence()
        self._tokens: Iterator[int] = iter(range(1, 2**63))
        self._held: dict[str, Ownership] = {}
        self._log = HoldLog(hold_log)
        self._left = anyio.Event()
        self._status = "joining"
        self._info = MemberInfo(worker=worker_id, host=socket.gethostname(), pid=os.getpid())

    def __repr__(self) -> str:
        return f"<LocalCoordinator {self._worker_id!r} {len(self._held)} accounts>"

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def status(self) -> str:
        return self._status

    async def run(self, holder: Holder, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._status = "active"
        task_status.started()
        try:
            await self._left.wait()
            with anyio.CancelScope(shield=True):
                await holder.stopped()
        finally:
            self._status = "left"
            for ownership in self._held.values():
                ownership.release()
            self._log.end_all("closed")
            self._log.close()

    def want(self, key: str) -> Ownership:
        ownership = Ownership(key, self._worker_id, next(self._tokens), self._fence)
        self._held[key] = ownership
        self._log.started(ownership)
        return ownership

    async def unwant(self, key: str) -> None:
        ownership = self._held.pop(key, None)
        if ownership is not None:
            ownership.release()
            self._log.ended(key, "removed")

    async def drain(self) -> None:
        """Nothing to hand over (there is no other worker): leave."""
        self.leave()

    def leave(self) -> None:
        self._left.set()

    def members(self) -> tuple[MemberView, ...]:
        return (MemberView(self._info, len(self._held)),)

    def holds(self) -> tuple[HoldRecord, ...]:
        return self._log.records()
