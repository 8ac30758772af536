"""The etcd coordinator: workers on one or many hosts, at most one session per account.

::

    coordinator = EtcdCoordinator("127.0.0.1:2379", worker_id="w1")
    async with Fleet(coordinator=coordinator) as fleet:
        for account in accounts:                 # every worker adds every account
            await fleet.add(account.key, account.url, ...)
        ...
        await fleet.drain()                      # on SIGTERM: hand over, then leave

How it holds (docs/cluster.md says it with the figures):

* **one lease per worker**, renewed on one persistent keepalive stream every
  ``keepalive_interval``; the member key ``{prefix}/members/{worker}`` and every
  owner key of the worker are on it, so nothing is written per account while
  nothing moves;
* **a claim** is a transaction creating ``{prefix}/owners/{account}`` on the lease
  if it does not exist; its create revision is the fencing token;
* **self-fencing**: the worker's deadline is the send time of the last accepted
  keepalive + the lease's TTL - ``fence_margin``, on
  :func:`~fsm_live.cluster.clock.boottime`; an answer that arrives after the
  deadline is not accepted.  At the deadline every session is closed abortively
  (a TCP reset: nothing written before is retransmitted after a partition
  heals) and the worker stops acting; then it joins again with a new lease;
* **its own owner keys watched**: one deleted by anyone but this worker, or put
  with another revision, ends that session at once;
* **handover** (rebalance, drain): revoke before assign: the session is closed,
  then the key deleted; the new owner claims on the delete event.

asyncio only (grpc.aio); needs ``pip install 'fsm_live[cluster]'`` (aetcd).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import sniffio

from fsm_live.cluster.clock import boottime
from fsm_live.cluster.coordinator import (
    CoordinatorError,
    CoordinatorUnavailable,
    Holder,
    HoldLog,
    HoldRecord,
    MemberView,
)
from fsm_live.cluster.keys import (
    DEFAULT_PREFIX,
    KeyLayout,
    MemberInfo,
    decode_owner,
    encode_owner,
)
from fsm_live.cluster.ownership import Fence, Ownership
from fsm_live.cluster.placement import ClusterView, OwnerKey
from fsm_live.cluster.settings import ClusterSettings
from fsm_live.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from fsm_live.cluster._etcd import EtcdClient

__all__ = ("EtcdCoordinator", "require_aetcd")

logger = logging.getLogger("fsm_live.cluster")

#: Claims or releases in flight at once (each one request to etcd, or one close).
_IN_FLIGHT: Final = 64
#: How long a new worker waits for the member key of a previous run of its id to go.
_JOIN_PATIENCE_TTLS: Final = 2
#: Seconds between attempts to join again after a fence or a lost etcd.
_REJOIN_DELAY: Final = 0.5
#: Items handled between two yields to the event loop in long loops (reads, placement).
_CHUNK: Final = 1000
#: Seconds the placement waits after a change for more (one pass per burst of events).
_COALESCE: Final = 0.01
#: The watchdog looks at the fence at least this often (a clock that jumped
#: forward after a suspend is noticed within this).
_WATCHDOG_PERIOD: Final = 0.25


def require_aetcd() -> None:
    """Raise :class:`~fsm_live.errors.MissingExtra` (one line: ``pip install
    'fsm_live[cluster]'``) unless aetcd and grpc import: a command checks it before
    it starts anything, as a worker would find out only once running."""
    from fsm_live.cluster import _etcd

    _etcd._load()


def _load_client() -> tuple[type[EtcdClient], Callable[[Any], bool]]:
    """The client class and its event test (the client raises MissingExtra without
    the ``cluster`` extra when it is built)."""
    from fsm_live.cluster._etcd import EtcdClient, is_delete

    return EtcdClient, is_delete


class _Pacer:
    """At most ``rate`` starts per second (a start waits for its slot)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = -math.inf

    async def wait(self) -> None:
        now = anyio.current_time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await anyio.sleep_until(slot)


class EtcdCoordinator:
    """A worker of a cluster coordinated by etcd at ``endpoint`` (``HOST:PORT``).

    ``worker_id`` must be unique among live workers (a second one with the same id
    waits up to two lease TTLs for the first to go, then raises
    :class:`CoordinatorError`).  ``prefix`` is where the cluster's keys live;
    ``settings`` its timing (:class:`ClusterSettings`); ``hold_log`` a JSON-lines
    file of its holds.  Raises :class:`ConfigError` for a bad id or prefix.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        worker_id: str,
        prefix: str = DEFAULT_PREFIX,
        settings: ClusterSettings | None = None,
        hold_log: Path | None = None,
    ) -> None:
        if not worker_id or not worker_id.isprintable():
            raise ConfigError("worker_id", f"must be a non-empty printable text, got {worker_id!r}")
        self.endpoint = endpoint
        self.layout = KeyLayout(prefix)
        self.settings = settings or ClusterSettings()
        self._worker_id = worker_id
        self._hold_log_path = hold_log
        self._log = HoldLog(hold_log)
        self.view = ClusterView(worker_id, handover_delay=self.settings.handover_delay)
        self._held: dict[str, Ownership] = {}
        self._busy: set[str] = set()  # accounts being claimed or released
        self._fence = Fence(-math.inf)
        self._status = "joining"
        self._holder: Holder | None = None
        self._client: EtcdClient | None = None
        self._dirty = anyio.Event()
        self._session_over = anyio.Event()
        self._is_delete: Callable[[Any], bool] = bool
        self._leaving = False
        self._draining = False
        self._left = anyio.Event()
        self._claims = _Pacer(self.settings.claims_per_second)
        self._releases = _Pacer(self.settings.releases_per_second)
        self._in_flight = anyio.Semaphore(_IN_FLIGHT)
        self._host = socket.gethostname()
        self._lease = self._ttl = self._member_rev = self._revision = 0
        #: Times this worker fenced itself, and why the last time.
        self.fences = 0
        self.last_fence: str | None = None

    def __repr__(self) -> str:
        return f"<EtcdCoordinator {self._worker_id!r} at {self.endpoint} {self._status}>"

    # -- the Coordinator protocol --------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def status(self) -> str:
        return self._status

    @property
    def fence(self) -> Fence:
        """The current lease's fence (its deadline on boottime)."""
        return self._fence

    def want(self, key: str) -> Ownership | None:
        self.view.want(key, anyio.current_time())
        self._dirty.set()
        return None

    async def unwant(self, key: str) -> None:
        self.view.unwant(key)
        self._dirty.set()

    async def drain(self) -> None:
        if self._status == "left":
            return
        self._draining = self.view.draining = True
        self._status = "draining"
        self._dirty.set()
        await self._put_member()
        with anyio.move_on_after(self._drain_bound()):
            while self._held or self._busy:
                self._dirty.set()
                await anyio.sleep(0.05)
        self.leave()
        with anyio.move_on_after(2 * self.settings.rpc_timeout):
            await self._left.wait()  # the lease revoked

    def leave(self) -> None:
        self._leaving = True
        self._session_over.set()

    def members(self) -> tuple[MemberView, ...]:
        counts = self.view.counts()
        return tuple(
            MemberView(info, counts.get(worker, 0))
            for worker, info in sorted(self.view.members.items())
        )

    def holds(self) -> tuple[HoldRecord, ...]:
        return self._log.records()

    def owner(self, key: str) -> str | None:
        """Which worker holds ``key``, as the owner keys say (None: nobody)."""
        owner = self.view.owners.get(key)
        return None if owner is None else owner.worker

    # -- running ---------------------------------------------------------------------------

    async def run(self, holder: Holder, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        if sniffio.current_async_library() != "asyncio":
            raise UsageError("the etcd coordinator runs on asyncio only (grpc.aio)")
        client_class, self._is_delete = _load_client()
        self._holder = holder
        try:
            async with client_class(self.endpoint, timeout=self.settings.rpc_timeout) as client:
                self._client = client
                await self._join(client, first=True)
                task_status.started()
                while True:
                    await self._session(client)
                    if self._leaving:
                        break
                    await self._rejoin(client)
                await self._leave(client, holder)
        finally:
            self._status = "left"
            self._log.end_all("closed")
            self._log.close()
            self._left.set()

    async def _join(self, client: EtcdClient, *, first: bool) -> None:
        """A new lease, the member key on it, a snapshot of the cluster."""
        self._status = "joining"
        settings = self.settings
        patience = anyio.current_time() + _JOIN_PATIENCE_TTLS * settings.lease_ttl + 1
        try:
            lease, ttl = await client.grant(settings.lease_ttl)
            sent = boottime()
            self._fence = Fence(sent + ttl - settings.fence_margin)
            self.view.lease = 0
            key, value = self.layout.member(self._worker_id), self._member_info().encode()
            while (member_rev := await client.create(key, value, lease)) is None:
                if not first or anyio.current_time() > patience:
                    await client.revoke(lease)
                    raise CoordinatorError(
                        f"etcd at {self.endpoint}: worker id {self._worker_id!r} is held by a "
                        "live worker"
                    )
                if not self._fence.valid():  # waited too long for our own lease: again
                    await client.revoke(lease)
                    lease, ttl = await client.grant(settings.lease_ttl)
                    self._fence = Fence(boottime() + ttl - settings.fence_margin)
                await anyio.sleep(settings.keepalive_interval)
            self._lease, self._ttl, self._member_rev = lease, ttl, member_rev
            self.view.lease = lease
            await self._resync(client)
        except CoordinatorUnavailable as exc:
            raise CoordinatorError(f"etcd at {self.endpoint}: {exc}") from None
        self._status = "draining" if self._draining else "active"
        logger.info("worker %r joined with lease %x (ttl %d s)", self._worker_id, lease, ttl)

    async def _rejoin(self, client: EtcdClient) -> None:
        """After a fence: join again until it works (etcd may be unreachable a while)."""
        while not self._leaving:
            try:
                await self._join(client, first=False)
            except CoordinatorError as exc:
                logger.warning("worker %r cannot join yet: %s", self._worker_id, exc)
                with anyio.move_on_after(_REJOIN_DELAY):
                    await self._session_over.wait()
            else:
                return

    def _member_info(self) -> MemberInfo:
        return MemberInfo(
            worker=self._worker_id,
            host=self._host,
            pid=os.getpid(),
            capacity=self.settings.capacity,
            draining=self._draining,
        )

    async def _put_member(self) -> None:
        """Say in the member key that this worker drains (one write, on the lease)."""
        client = self._client
        if client is None or self.view.lease == 0:
            return
        key = self.layout.member(self._worker_id)
        try:
            await client.replace(key, self._member_info().encode(), self._lease, self._member_rev)
        except CoordinatorUnavailable as exc:
            logger.warning("worker %r: could not update its member key: %s", self._worker_id, exc)

    async def _resync(self, client: EtcdClient) -> int:
        """Read every key of the cluster; our holds that etcd no longer has end now."""
        revision, kvs = await client.snapshot(self.layout.root)
        members: list[MemberInfo] = []
        owners: dict[str, OwnerKey] = {}
        for index, kv in enumerate(kvs):
            if index % _CHUNK == _CHUNK - 1:
                await anyio.lowlevel.checkpoint()  # keepalives go on during a large read
            parsed = self.layout.parse(bytes(kv.key))
            if parsed is None:
                continue
            kind, name = parsed
            if kind == "member":
                members.append(MemberInfo.decode(name, bytes(kv.value)))
            else:
                owners[name] = OwnerKey(
                    decode_owner(bytes(kv.value)), int(kv.create_revision), int(kv.lease)
                )
        self.view.reset(members, owners, anyio.current_time())
        for account, ownership in list(self._held.items()):
            owner = owners.get(account)
            if owner is None or owner.revision != ownership.token:
                self._lose(account, "lost")
        self._revision = revision
        self._dirty.set()
        return revision

    async def _session(self, client: EtcdClient) -> None:
        """Keepalives, the watch, the fence watchdog and the placement, until the
        fence passes, the lease is lost or the worker leaves."""
        self._session_over = anyio.Event()
        if self._leaving:
            return
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._keepalive, client, self._lease)
            task_group.start_soon(self._watch, client)
            task_group.start_soon(self._watchdog)
            task_group.start_soon(self._place, client, task_group)
            await self._session_over.wait()
            task_group.cancel_scope.cancel()
        if not self._leaving or not self._fence.valid():
            await self._after_fence(client)

    def _end_session(self, why: str) -> None:
        """The fence passed or the lease is gone: abort every session now, stop acting."""
        if self._fence.tripped:
            return
        self._fence.trip()
        self.fences += 1
        self.last_fence = why
        self._status = "fenced"
        logger.warning("worker %r fenced itself: %s", self._worker_id, why)
        for account in list(self._held):
            self._lose(account, "fenced")
        self._session_over.set()

    def _lose(self, account: str, why: str) -> None:
        ownership = self._held.pop(account, None)
        self.view.unhold(account)
        if ownership is None:
            return
        ownership.release()
        if self._holder is not None:
            self._holder.abort(account)
        self._log.ended(account, why)

    async def _after_fence(self, client: EtcdClient) -> None:
        """Give the old lease back if etcd can be reached (its keys go at once, the
        other workers need not wait for it to expire); never wait long for it."""
        lease, self.view.lease = self._lease, 0
        with (
            anyio.move_on_after(self.settings.rpc_timeout),
            contextlib.suppress(CoordinatorUnavailable),
        ):
            await client.revoke(lease)

    async def _leave(self, client: EtcdClient, holder: Holder) -> None:
        """Every session is stopped, then the lease revoked: the other workers take
        the accounts left (after their handover delay)."""
        with anyio.CancelScope(shield=True):
            await holder.stopped()
            for account in list(self._held):
                ownership = self._held.pop(account)
                ownership.release()
                self._log.ended(account, "closed")
            if self._fence.tripped:
                return
            self._fence.trip()
            with anyio.move_on_after(self.settings.rpc_timeout):
                try:
                    await client.revoke(self._lease)
                except CoordinatorUnavailable as exc:
                    logger.warning("worker %r: lease not revoked: %s", self._worker_id, exc)

    # -- the session's tasks ----------------------------------------------------------------

    async def _keepalive(self, client: EtcdClient, lease: int) -> None:
        """One stream; each answer in time moves the fence deadline to its request's
        send time + TTL - margin.  A stream that breaks is opened again."""
        settings = self.settings
        while True:
            stream = client.keepalive(lease)
            sent: deque[float] = deque()
            try:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(self._keepalive_answers, stream, sent)
                    while len(sent) <= settings.lease_ttl / settings.keepalive_interval:
                        sent.append(boottime())
                        await stream.send()
                        await anyio.sleep(settings.keepalive_interval)
                    task_group.cancel_scope.cancel()  # a lease TTL of keepalives unanswered
            except* CoordinatorUnavailable as group:
                logger.info("worker %r: keepalive stream: %s", self._worker_id, group.exceptions[0])
            finally:
                stream.cancel()
            await anyio.sleep(min(settings.keepalive_interval, 0.2))

    async def _keepalive_answers(self, stream: Any, sent: deque[float]) -> None:
        margin = self.settings.fence_margin
        while True:
            ttl = await stream.receive()
            sent_at = sent.popleft() if sent else None
            if ttl <= 0:
                self._end_session("the lease expired on etcd")
                return
            if sent_at is not None:
                self._fence.extend(sent_at + min(ttl, self._ttl) - margin)

    async def _watchdog(self) -> None:
        fence = self._fence
        while True:
            remaining = fence.remaining()
            if remaining <= 0:
                self._end_session("no keepalive answered in time")
                return
            await anyio.sleep(min(remaining, _WATCHDOG_PERIOD))

    async def _watch(self, client: EtcdClient) -> None:
        while True:
            try:
                async for response in client.watch(self.layout.root, self._revision + 1):
                    await self._apply(response.events)
                    self._revision = int(response.header.revision)
            except CoordinatorUnavailable as exc:
                logger.info("worker %r: watch: %s; reading the cluster again", self._worker_id, exc)
                await anyio.sleep(0.2)
                try:
                    await self._resync(client)
                except CoordinatorUnavailable:
                    await anyio.sleep(0.5)

    async def _apply(self, events: Any) -> None:
        """One watch response: members first (an owner key that went with its lease
        goes in the same revision as its member key), then owners.  Yields to the
        event loop every :data:`_CHUNK` events: a lease revoked with 25,000 keys
        must not hold up this worker's own keepalives."""
        now = anyio.current_time()
        view = self.view
        owner_events = []
        for event in events:
            parsed = self.layout.parse(bytes(event.kv.key))
            if parsed is None:
                continue
            kind, name = parsed
            if kind == "owner":
                owner_events.append((event, name))
            elif self._is_delete(event):
                view.member_deleted(name, now)
                if name == self._worker_id and not self._leaving:
                    self._end_session("its member key was deleted (lease revoked or expired)")
            else:
                view.member_put(MemberInfo.decode(name, bytes(event.kv.value)), now)
        for index, (event, account) in enumerate(owner_events):
            if index % _CHUNK == _CHUNK - 1:
                await anyio.lowlevel.checkpoint()
            held = self._held.get(account)
            if self._is_delete(event):
                view.owner_deleted(account, now)
                if held is not None:
                    self._lose(account, "lost")  # deleted, and not by us: we pop first
            else:
                kv = event.kv
                owner = OwnerKey(
                    decode_owner(bytes(kv.value)), int(kv.create_revision), int(kv.lease)
                )
                view.owner_put(account, owner)
                if held is not None and owner.revision != held.token:
                    self._lose(account, "lost")
        self._dirty.set()

    async def _place(self, client: EtcdClient, task_group: anyio.abc.TaskGroup) -> None:
        """Claim and hand over, paced, whenever the view changed."""
        view, settings = self.view, self.settings
        wake_at = math.inf  # the one wake-up scheduled for claims waiting on a delay
        pass_time = 0.0
        while True:
            await self._dirty.wait()
            # A burst of watch events makes one pass, not one each; a pass over many
            # accounts takes at most a third of the time.
            await anyio.sleep(max(_COALESCE, 2 * pass_time))
            self._dirty = anyio.Event()
            now = anyio.current_time()
            if wake_at <= now:
                wake_at = math.inf
            settle_until = view.members_changed_at + settings.settle_delay
            if now < settle_until:
                await anyio.sleep_until(settle_until)
                now = anyio.current_time()
            await self._warm(view)
            for account in view.to_release(self._busy):
                self._busy.add(account)
                task_group.start_soon(self._paced, self._releases, self._release, client, account)
            claims, later = view.to_claim(now, self._busy)
            for account in claims:
                self._busy.add(account)
                task_group.start_soon(self._paced, self._claims, self._claim, client, account)
            if later is not None and later < wake_at:
                wake_at = later
                task_group.start_soon(self._wake_at, later)
            pass_time = anyio.current_time() - now

    async def _warm(self, view: ClusterView) -> None:
        """Place the accounts a pass will look at, yielding every :data:`_CHUNK` (the
        first pass after a change of members places every account: seconds for
        100,000, which must not hold up the keepalives)."""
        for index, account in enumerate(view.unplaced()):
            view.target(account)
            if index % _CHUNK == _CHUNK - 1:
                await anyio.lowlevel.checkpoint()

    async def _wake_at(self, at: float) -> None:
        await anyio.sleep_until(at)
        self._dirty.set()

    async def _paced(
        self,
        pacer: _Pacer,
        work: Callable[[EtcdClient, str], Awaitable[None]],
        client: EtcdClient,
        account: str,
    ) -> None:
        try:
            await pacer.wait()
            async with self._in_flight:
                await work(client, account)
        except CoordinatorUnavailable as exc:
            logger.info("worker %r: %s of %r: %s", self._worker_id, work.__name__, account, exc)
        finally:
            self._busy.discard(account)
            self._dirty.set()

    async def _claim(self, client: EtcdClient, account: str) -> None:
        view = self.view
        if (
            not self._fence.valid()
            or account in view.owners
            or view.target(account) != self._worker_id
        ):
            return
        lease = self._lease
        revision = await client.create(
            self.layout.owner(account), encode_owner(self._worker_id), lease
        )
        if revision is None:
            return  # someone holds it: the watch says who
        ownership = Ownership(account, self._worker_id, revision, self._fence)
        if self._fence.tripped or lease != self.view.lease:
            return  # fenced meanwhile: the key goes with the old lease
        self._held[account] = ownership
        view.hold(account)
        view.owner_put(account, OwnerKey(self._worker_id, revision, lease))
        self._log.started(ownership)
        holder = self._holder
        assert holder is not None
        try:
            await holder.acquire(account, ownership)
        except Exception:
            logger.exception("worker %r: starting %r raised", self._worker_id, account)

    async def _release(self, client: EtcdClient, account: str) -> None:
        """Revoke before assign: the session closes, then the key goes."""
        ownership = self._held.get(account)
        holder = self._holder
        assert holder is not None
        if ownership is not None:
            await holder.release(account)
            self._held.pop(account, None)
            self.view.unhold(account)
            ownership.release()
            self._log.ended(account, "released")
        owner = self.view.owners.get(account)
        if owner is not None and owner.lease == self._lease:
            await client.delete(self.layout.owner(account), owner.revision)
            # Gone now (the watch says so in a moment): not released a second time.
            self.view.owner_deleted(account, anyio.current_time())

    def _drain_bound(self) -> float:
        """How long a drain may take: every release paced, plus one close each."""
        held = len(self._held) + len(self._busy)
        return held / self.settings.releases_per_second + 2 * self.settings.rpc_timeout + 10.0
