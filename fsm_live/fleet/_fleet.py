"""Many live connections in one process, one per key (say, an account id).

::

    async with Fleet(close_timeout=5) as fleet:
        await fleet.add("alice", "wss://example.org/feed", protocol="json")
        await fleet.add("bob", "wss://example.org/feed", protocol="json")
        ...
        await fleet.replace("bob", "wss://other.example.org/feed", protocol="json")
        await fleet.remove("alice")
        print(fleet.stats().states)

A :class:`Fleet` owns a task group.  Each member's :class:`LiveConnection` runs
in one task of it (``async with connection:`` until asked to stop), so a member
costs its connection's own tasks plus that one.  Every member shares ONE
lifecycle Machine (docs/architecture.md, rule 5).

Isolation: members share nothing but the event loop and the fleet's counters.
A member that is slow (a black-holed server, a stuck close, a blocking
``on_message`` handler) delays no other: adding, removing and replacing lock
only their own key, and closing the fleet closes every member at once, each
bounded by ``close_timeout``.  A member whose connection crashes (an exception
escaping it, e.g. from an ``on_transition`` callback or a transport) is logged
on ``fsm_live.fleet`` and reported in :meth:`Fleet.stats` and
:meth:`Fleet.crash`; it is never propagated, and the other members run on.
What no event loop can isolate is code that blocks it (a synchronous sleep in a
handler): that stalls every member.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Final, Self, Unpack

import anyio
import anyio.abc
import attrs

from fsm_live._runtime.inbox import Handler
from fsm_live.cluster.coordinator import Coordinator, LocalCoordinator
from fsm_live.cluster.ownership import Ownership
from fsm_live.config import Config, checked
from fsm_live.connection import (
    ConnectionOptions,
    LiveConnection,
    default_machine,
    endpoint_key,
    new_endpoint,
)
from fsm_live.core.effects import TransitionRecord
from fsm_live.core.endpoint import Endpoint, EndpointStatus
from fsm_live.core.lifecycle import LifecycleMachine
from fsm_live.core.pacing import ReconnectPacer
from fsm_live.errors import ConfigError, NotAMember, UsageError
from fsm_live.fleet.stats import FleetStats, FleetTransition, TransitionRate, summarize
from fsm_live.transport.tcp import target_for
from fsm_live.transport.url import check_url

__all__ = ("DEFAULT_RECONNECTS_PER_SECOND", "Fleet", "FleetObserver")

logger = logging.getLogger("fsm_live.fleet")

#: Reconnect attempts per second of a whole fleet, by default: 1,000 members that lost
#: their server come back within about 5 s, and no 100 ms holds more than about 2% of
#: them (docs/benchmarks.md, restart storm).
DEFAULT_RECONNECTS_PER_SECOND: Final = 200.0

#: Called with a member's key and its transition record, after every transition.
FleetObserver = Callable[[str, TransitionRecord], None]


@attrs.define(eq=False)
class _Member:
    """One key's connection and the handles of the task running it."""

    key: str
    connection: LiveConnection
    ownership: Ownership
    # The fleet sets this scope's deadline when it asks the member to stop.
    scope: anyio.CancelScope = attrs.Factory(anyio.CancelScope)
    stop: anyio.Event = attrs.Factory(anyio.Event)
    done: anyio.Event = attrs.Factory(anyio.Event)
    running: bool = False
    crash: str | None = None


class _Grant:
    """The ownership a member's connection acts under: None until the coordinator
    grants it (a connection is built before the coordinator is asked, so that bad
    options raise first); not valid until then."""

    __slots__ = ("ownership",)

    def __init__(self, ownership: Ownership | None = None) -> None:
        self.ownership = ownership

    def valid(self) -> bool:
        ownership = self.ownership
        return ownership is not None and ownership.valid()


class Fleet:
    """Live connections by key, sharing one Machine; an async context manager.

    ``machine`` is the shared :class:`LifecycleMachine` (default: the packaged
    spec's, :func:`~fsm_live.connection.default_machine`).  ``close_timeout``
    bounds how long removing, replacing or closing waits for one member, and
    closing the fleet closes every member concurrently, so it takes about as
    long as its slowest member, never N times as long.  (A member's own close is
    bounded by its ``Config.close_timeout`` for the parts it shields from
    cancellation, such as joining its tasks.)  ``recent`` transitions are kept
    for :meth:`stats`, which also reports transitions per minute over the last
    ``rate_window`` seconds and the ``worst`` members.

    ``reconnects_per_second`` bounds the reconnect attempts of all members
    together (a :class:`~fsm_live.core.pacing.ReconnectPacer` they share): after
    a server restart, a thousand members come back over seconds instead of in one
    burst; members' first dials take slots of it too, so a fleet of thousands opens
    paced.  None turns pacing off.

    ``coordinator`` decides which of the fleet's accounts (the keys added) run in
    this process (:mod:`fsm_live.cluster`; docs/cluster.md).  The default,
    :class:`~fsm_live.cluster.LocalCoordinator`, runs every one at once.  With an
    :class:`~fsm_live.cluster.EtcdCoordinator`, each account runs on one worker
    of the cluster: :meth:`add` returns None for one that runs elsewhere (for
    now), the members (``fleet[key]``, ``len``, iteration, :meth:`stats`) are the
    accounts running here, and :meth:`drain` hands them over before leaving.
    Each member's connection checks its ownership before every inbound message
    and every write (``LiveConnection(owned=...)``) and is aborted when it is lost.

    Use it with ``async with`` in one task; :meth:`add`, :meth:`remove` and
    :meth:`replace` may be called from any task while it is entered.  Leaving
    closes every member; afterwards the members stay readable (CLOSED) but no
    key can be added, removed or replaced.
    """

    def __init__(
        self,
        *,
        machine: LifecycleMachine | None = None,
        close_timeout: float = 5.0,
        recent: int = 64,
        rate_window: float = 60.0,
        worst: int = 10,
        reconnects_per_second: float | None = DEFAULT_RECONNECTS_PER_SECOND,
        coordinator: Coordinator | None = None,
    ) -> None:
        if not close_timeout > 0:
            raise ConfigError("close_timeout", f"must be positive, got {close_timeout!r}")
        if recent < 0 or worst < 0:
            raise ConfigError("recent", f"recent and worst must be >= 0, got {recent}, {worst}")
        self.machine = machine or default_machine()
        self.pacer = None
        if reconnects_per_second is not None:
            try:
                self.pacer = ReconnectPacer(reconnects_per_second)
            except ConfigError as error:  # named as the caller typed it
                message = str(error).removeprefix(f"{error.field}: ")
                raise ConfigError("reconnects_per_second", message) from None
        self.close_timeout = close_timeout
        self.worst = worst
        self.coordinator: Coordinator = coordinator or LocalCoordinator()
        self._accounts: dict[str, tuple[str, ConnectionOptions]] = {}  # every key added
        self._members: dict[str, _Member] = {}
        #: The endpoints its members dial, by key, each shared by those members.
        self._endpoints: dict[str, Endpoint] = {}
        self._busy: dict[str, anyio.Event] = {}  # keys being added, removed or replaced
        self._counts: Counter[str] = Counter()  # members per state, crashed ones excluded
        self._crashed = 0
        self._transitions = 0
        self._rate = TransitionRate(rate_window)
        self._recent: deque[FleetTransition] = deque(maxlen=recent)
        self._observers: list[FleetObserver] = []
        self._changed: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._started_at = 0.0

    def __repr__(self) -> str:
        return f"<Fleet {len(self._members)} connections>"

    # -- lifetime ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None or self._closing:
            raise UsageError("a Fleet can be entered only once")
        self._started_at = anyio.current_time()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self.coordinator.run, self, name="fsm_live.fleet coordinator")
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise  # what joining raised (CoordinatorError), as itself
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._closing = True
        for member in self._members.values():
            self._ask_to_stop(member)
        self.coordinator.leave()
        return await self._task_group.__aexit__(exc_type, exc, tb)

    @property
    def started_at(self) -> float:
        """When the fleet was entered (``anyio.current_time()``)."""
        return self._started_at

    # -- membership --------------------------------------------------------------------

    async def add(
        self, key: str, url: str, **options: Unpack[ConnectionOptions]
    ) -> LiveConnection | None:
        """Add account ``key``; start its connection to ``url`` and return it once
        entered if it runs here (always, with the default coordinator), else None
        (it starts here when the coordinator grants it, if ever).

        ``options`` are :class:`LiveConnection`'s (:class:`ConnectionOptions`),
        except ``machine`` and ``pacer`` (the fleet's are shared; a TypeError).
        Returns once the connection is entered: its first dial comes in its slot of
        the fleet's pacer, so it may still be in its initial state; wait with
        :meth:`LiveConnection.wait_for`.  Raises :class:`ConfigError` if
        ``key`` is a member already or for a bad URL or option, what entering the
        connection raised (say, an unwritable ``trace`` path; the key is then not
        added), and :class:`UsageError` outside
        ``async with``.
        """
        async with self._exclusive(key):
            if key in self._accounts:
                raise ConfigError("key", f"{key!r} is already in the fleet")
            # Built first: bad options raise before the key is an account.
            grant = _Grant()
            connection = self._build(key, url, options, grant)
            try:
                ownership = grant.ownership = self.coordinator.want(key)
            except BaseException:
                self._discard(connection)
                raise
            self._accounts[key] = (url, options)
            if ownership is None:  # another worker's, for now: built only to check it
                self._discard(connection)
                return None
            try:
                await self._start(_Member(key, connection, ownership))
            except BaseException:
                del self._accounts[key]
                with anyio.CancelScope(shield=True):
                    await self.coordinator.unwant(key)
                raise
            return connection

    async def remove(self, key: str) -> None:
        """Close member ``key``'s connection and forget it.

        Returns once it is closed, within ``close_timeout`` (other members go on
        meanwhile; a caller cancelled while waiting does not interrupt the close),
        and the coordinator released it.  Raises KeyError for a key that was not
        added, RuntimeError outside ``async with``.
        """
        async with self._exclusive(key):
            self._task_group_or_raise()
            if key not in self._accounts:
                raise NotAMember(f"{key!r} is not a member of the fleet")
            del self._accounts[key]
            with anyio.CancelScope(shield=True):
                await self._stop_member(key)
                await self.coordinator.unwant(key)

    async def replace(
        self, key: str, url: str, **options: Unpack[ConnectionOptions]
    ) -> LiveConnection:
        """Close member ``key``'s connection, then start a new one to ``url``.

        The new connection is built (and its options checked) before the old one
        is touched.  Until this returns, ``fleet[key]`` is the old connection.
        Raises KeyError for a key that is not a member, and what :meth:`add`
        raises; if the new connection fails to start, ``key`` is no longer a member.
        """
        async with self._exclusive(key):
            old = self._member(key)
            connection = self._build(key, url, options, _Grant(old.ownership))
            self._accounts[key] = (url, options)
            await self._stop_member(key)
            await self._start(_Member(key, connection, old.ownership))
            return connection

    async def drain(self) -> None:
        """Hand this worker's accounts over to the cluster's other workers, paced,
        then leave the cluster; the fleet is to be closed next.  With the default
        coordinator there is no other worker: the same as closing."""
        self._task_group_or_raise()
        await self.coordinator.drain()

    def accounts(self) -> list[str]:
        """Every account added (running here or not), in the order added."""
        return list(self._accounts)

    # -- the coordinator's Holder --------------------------------------------------------

    async def acquire(self, key: str, ownership: Ownership) -> None:
        """Start account ``key`` under ``ownership`` (for the coordinator); nothing if it
        is no longer an account, runs already, or the ownership is no longer valid."""
        async with self._exclusive(key):
            account = self._accounts.get(key)
            if account is None or key in self._members or not ownership.valid():
                return
            url, options = account
            connection = self._build(key, url, options, _Grant(ownership))
            await self._start(_Member(key, connection, ownership))

    async def release(self, key: str) -> None:
        """Close account ``key``'s connection, if it runs here (for the coordinator)."""
        async with self._exclusive(key):
            await self._stop_member(key)

    def abort(self, key: str) -> None:
        """Abort account ``key``'s connection now (for the coordinator, whose ownership
        ended); the member is then removed in the background."""
        member = self._members.get(key)
        if member is None:
            return
        member.connection.abort("no longer owned by this worker")
        if self._task_group is not None and not self._closing:
            self._task_group.start_soon(self.release, key)

    async def stopped(self) -> None:
        """Return once every member's task ended (for the coordinator leaving)."""
        for member in list(self._members.values()):
            await member.done.wait()

    def __getitem__(self, key: str) -> LiveConnection:
        """Member ``key``'s connection; KeyError if it is not a member."""
        try:
            return self._members[key].connection
        except KeyError:
            raise NotAMember(f"{key!r} is not a member of the fleet") from None

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[str]:
        """The members' keys, in the order they were added (iterates a snapshot, so
        members may be added and removed meanwhile)."""
        return iter(list(self._members))

    def keys(self) -> list[str]:
        """The members' keys, in the order they were added (a snapshot)."""
        return list(self._members)

    def crash(self, key: str) -> str | None:
        """Why member ``key``'s connection crashed, or None while it runs (KeyError
        if not a member).  A crashed member stays until removed or replaced."""
        try:
            return self._members[key].crash
        except KeyError:
            raise NotAMember(f"{key!r} is not a member of the fleet") from None

    # -- observing ---------------------------------------------------------------------

    def on_transition(self, callback: FleetObserver) -> None:
        """Call ``callback(key, record)`` synchronously after every member's transition.

        It runs inside that member's driver: keep it short.  An exception it
        raises is logged and swallowed (one callback must not end every
        connection); use :meth:`LiveConnection.on_transition` for per-member
        callbacks whose errors should end the connection.
        """
        self._observers.append(callback)

    def count(self, state: str) -> int:
        """Members in ``state`` now (crashed ones excluded); cheap, for waiting loops."""
        return self._counts[state]

    async def wait_changed(self) -> None:
        """Return after the next transition of any member, or the next member added,
        removed or crashed."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def stats(self) -> FleetStats:
        """A frozen snapshot of the fleet's figures (see :class:`FleetStats`).

        Costs one :meth:`LiveConnection.stats` per member.
        """
        now = anyio.current_time()
        return summarize(
            ((m.key, m.connection.stats(), m.crash) for m in self._members.values()),
            at=now,
            states=self.machine.states,
            counts=self._counts,
            crashed=self._crashed,
            transitions_total=self._transitions,
            transitions_per_minute=self._rate.per_minute(now),
            recent=self._recent,
            worst=self.worst,
            endpoints=self.endpoints(),
        )

    def endpoints(self) -> tuple[EndpointStatus, ...]:
        """The endpoints the members dial, each up or down (and since when), with its
        members: one outage of an endpoint, not N members' failures."""
        return tuple(endpoint.status() for endpoint in self._endpoints.values())

    # -- internals ---------------------------------------------------------------------

    def _task_group_or_raise(self) -> anyio.abc.TaskGroup:
        if self._closing:
            raise UsageError("the fleet is closed")
        if self._task_group is None:
            raise UsageError("the fleet is not running (use async with)")
        return self._task_group

    def _member(self, key: str) -> _Member:
        self._task_group_or_raise()
        try:
            return self._members[key]
        except KeyError:
            raise NotAMember(f"{key!r} is not a member of the fleet") from None

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """One membership change per key at a time; other keys are not held up."""
        self._task_group_or_raise()
        while (busy := self._busy.get(key)) is not None:
            await busy.wait()
        done = self._busy[key] = anyio.Event()
        try:
            yield
        finally:
            del self._busy[key]
            done.set()

    def _build(
        self, key: str, url: str, options: ConnectionOptions, grant: _Grant
    ) -> LiveConnection:
        """``key``'s connection, acting while ``grant`` is valid.  Raises what
        :class:`LiveConnection` raises for bad options, before anything is kept (an
        endpoint is made only for a connection that could be built)."""
        _refuse_the_fleets_own(options)
        handler = options.get("on_message")
        if handler is not None:
            options = {**options, "on_message": _owned_only(handler, grant.valid)}
        proxy = options.get("proxy", True)
        target = target_for(check_url(url), ssl=options.get("ssl"), proxy=proxy)
        name = endpoint_key(target)
        endpoint = known = self._endpoints.get(name)
        if endpoint is None:
            config = checked(options.get("config")) or Config()
            endpoint = new_endpoint(target, config, random=options.get("random"))
            endpoint.since = anyio.current_time()
        connection = LiveConnection(
            url,
            machine=self.machine,
            pacer=self.pacer,
            endpoint=endpoint,
            owned=grant.valid,
            **options,
        )
        if known is None:
            self._endpoints[name] = endpoint
        connection.on_transition(functools.partial(self._observe, key))
        return connection

    def _discard(self, connection: LiveConnection) -> None:
        """A connection built that will not run: it leaves its endpoint, and an
        endpoint it alone dialled is forgotten (a worker lists only the endpoints of
        the accounts it runs)."""
        endpoint = connection._abandon()
        if endpoint is None or endpoint.members:
            return
        if self._endpoints.get(endpoint.key) is endpoint:
            del self._endpoints[endpoint.key]

    async def _stop_member(self, key: str) -> None:
        """Stop and forget ``key``'s member, if it runs (under its key's lock)."""
        member = self._members.get(key)
        if member is not None:
            await self._stop(member)
            del self._members[key]
            self._forget(member)

    async def _start(self, member: _Member) -> None:
        task_group = self._task_group_or_raise()
        final = {name for name, state in self.machine.states.items() if state.final}

        def stop_when_closed(record: TransitionRecord) -> None:
            # A connection that closed by itself (a callback raised) ends its task too.
            if record.dest in final:
                member.stop.set()

        member.connection.on_transition(stop_when_closed)
        self._members[member.key] = member
        self._counts[member.connection.state] += 1
        try:
            await task_group.start(self._run, member, name=f"fsm_live.fleet {member.key!r}")
        except BaseException as exc:
            del self._members[member.key]
            self._forget(member)
            self._discard(member.connection)  # it never ran
            if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                raise exc.exceptions[0] from None  # what entering the connection raised
            raise
        self._notify()

    async def _run(self, member: _Member, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The member's task: run its connection until asked to stop."""
        try:
            with member.scope:
                async with member.connection:
                    member.running = True
                    task_status.started()
                    await member.stop.wait()
        except* Exception as group:
            if not member.running:
                raise  # to add() / replace(), through task_group.start()
            self._crashed_with(member, group)
        finally:
            member.done.set()

    def _crashed_with(self, member: _Member, group: BaseExceptionGroup[Exception]) -> None:
        member.crash = "; ".join(f"{type(exc).__name__}: {exc}" for exc in _leaves(group))[:500]
        self._counts[member.connection.state] -= 1
        self._crashed += 1
        logger.error(
            "connection %r crashed (the fleet goes on): %s",
            member.key,
            member.crash,
            exc_info=group,
        )
        self._notify()

    def _ask_to_stop(self, member: _Member) -> None:
        member.scope.deadline = min(
            member.scope.deadline, anyio.current_time() + self.close_timeout
        )
        member.stop.set()

    async def _stop(self, member: _Member) -> None:
        self._ask_to_stop(member)
        with anyio.CancelScope(shield=True):  # bounded by the member's deadline
            await member.done.wait()

    def _forget(self, member: _Member) -> None:
        if member.crash is not None:
            self._crashed -= 1
        else:
            self._counts[member.connection.state] -= 1
        self._notify()

    def _observe(self, key: str, record: TransitionRecord) -> None:
        counts = self._counts
        counts[record.source] -= 1
        counts[record.dest] += 1
        self._transitions += 1
        self._rate.add(record.at)
        self._recent.append(FleetTransition(key, record))
        self._notify()
        for observer in self._observers:
            try:
                observer(key, record)
            except Exception:
                logger.exception("fleet transition callback %r raised", observer)

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()


def _refuse_the_fleets_own(options: ConnectionOptions) -> None:
    if {"machine", "pacer", "endpoint", "owned"} & set(options):
        raise TypeError(
            "a fleet's connections share its machine, pacer and endpoints, and its "
            "coordinator decides ownership; configure them with Fleet()"
        )


def _owned_only(handler: Handler, owned: Callable[[], bool]) -> Handler:
    """``handler``, called only while ``owned()``: a message taken from the inbox
    after the ownership ended is dropped (logged at DEBUG), never handled."""

    async def guarded(message: Any) -> None:
        if owned():
            await handler(message)
        else:
            logger.debug("a message was dropped: its account is no longer owned here")

    return guarded


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    leaves: list[Exception] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves
