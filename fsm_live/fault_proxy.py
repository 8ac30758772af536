"""An in-process TCP proxy that injects network faults, for tests.

:class:`FaultProxy` listens on a loopback port and forwards every accepted TCP
connection (a *link*) to an upstream ``host:port``.  While links are open, the
test can change the :class:`Faults` applied to each :class:`Direction` (latency,
bandwidth cap, black hole, fragmentation, data limit, slow close) and trigger
link-wide events (:meth:`FaultProxy.reset_links`, :meth:`FaultProxy.drop_links`,
:meth:`FaultProxy.set_down`).  Changes take effect on open links immediately.

The proxy runs on any anyio backend (asyncio or trio).  All timing goes through
:func:`anyio.current_time` and cancel-scope deadlines, so time-based faults
follow a mock clock such as :class:`trio.testing.MockClock`.

Example::

    async with FaultProxy(upstream=("127.0.0.1", server_port)) as proxy:
        proxy.set_faults(Faults(latency=0.05))
        stream = await anyio.connect_tcp(*proxy.address)
        ...
"""

from __future__ import annotations

import contextlib
import enum
import math
import random
import socket
import struct
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import attrs
from anyio.abc import SocketAttribute
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ("Direction", "FaultProxy", "Faults", "ProxyStats")

# Chunks read but not yet forwarded, per direction, before the proxy stops reading
# (and TCP flow control pushes back on the sender).
_MAX_QUEUED_CHUNKS = 1024
#: Under a bandwidth cap, a direction holds at most this much transfer before it stops
#: reading from the sender (and at least _MIN_HELD bytes).
_HELD_SECONDS = 0.1
_MIN_HELD = 16 * 1024
#: SO_RCVBUF of the links the proxy accepts (the kernel doubles it).
_RECEIVE_WINDOW = 16 * 1024
# A bandwidth-capped direction forwards pieces worth this many seconds of transfer.
_BANDWIDTH_TICK = 0.05
_LINGER_ZERO = struct.pack("ii", 1, 0)


class Direction(enum.Enum):
    """The direction of a byte stream through the proxy."""

    #: From the client that connected to the proxy towards the upstream server.
    UPSTREAM = "upstream"
    #: From the upstream server back to the client.
    DOWNSTREAM = "downstream"


_Validator = Callable[[object, "attrs.Attribute[Any]", Any], None]


def _check(ok: Callable[[Any], bool], requirement: str, *, optional: bool = False) -> _Validator:
    """An attrs validator raising ValueError unless ``ok(value)`` (or None if optional)."""

    def validate(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            raise ValueError(f"Faults.{attribute.name} must be {requirement}, got {value!r}")

    return validate


_non_negative = _check(lambda v: v >= 0, "a number >= 0")
_optional_positive = _check(lambda v: v > 0, "None or a number > 0", optional=True)
_optional_positive_int = _check(
    lambda v: isinstance(v, int) and v > 0, "None or an int > 0", optional=True
)
_optional_non_negative_int = _check(
    lambda v: isinstance(v, int) and v >= 0, "None or an int >= 0", optional=True
)


@attrs.frozen(kw_only=True)
class Faults:
    """The faults applied to one direction of every link.

    The default value injects no fault.  Instances are immutable; derive variants
    with :func:`attrs.evolve`.

    Attributes:
        latency: Seconds added to the delivery of each chunk, measured from the
            moment the proxy read it.  Order is always preserved.
        jitter: Each chunk's delay is ``latency + u * jitter`` for ``u`` drawn
            uniformly from ``[-1, 1]``, clamped at 0.
        bandwidth: Cap in bytes per second, or ``None`` for no cap.  Data is
            forwarded in pieces of about 50 ms worth of transfer, each started no
            sooner than the previous piece's size divided by ``bandwidth``.  Like
            a slow link, the proxy then holds at most about 0.1 s of transfer
            (16 KiB at least) and stops reading from the sender beyond that, and
            its receive window is small, so the sender feels the cap as
            backpressure.
        black_hole: Keep reading from the sender but forward nothing: data is
            discarded (never delivered later), and a close or reset of the sender
            is not propagated while the black hole lasts.  No FIN, no RST.
        slice_size: Forward at most this many bytes per write, or ``None``.
        slice_delay: Minimum pause in seconds between the end of one write and
            the start of the next (meant to be used with ``slice_size``).
        limit_data: Close the whole link (FIN both ways) once this many bytes have
            been forwarded in this direction; the write that reaches the limit is
            truncated to it.  Counting starts when the link opens, and starts over
            on an open link whenever ``limit_data`` changes to a different value.
        slow_close: Seconds by which a close (FIN) or reset received from the
            sender is delayed before it is propagated to the receiver.
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    bandwidth: float | None = attrs.field(default=None, validator=_optional_positive)
    black_hole: bool = False
    slice_size: int | None = attrs.field(default=None, validator=_optional_positive_int)
    slice_delay: float = attrs.field(default=0.0, validator=_non_negative)
    limit_data: int | None = attrs.field(default=None, validator=_optional_non_negative_int)
    slow_close: float = attrs.field(default=0.0, validator=_non_negative)


def _chunk_delay(faults: Faults, jitter_draw: float) -> float:
    """The delay of a chunk whose jitter draw, in ``[-1, 1]``, is ``jitter_draw``."""
    return max(0.0, faults.latency + jitter_draw * faults.jitter)


def _piece_size(faults: Faults) -> int | None:
    """The largest single write ``faults`` allow, or ``None`` for no limit."""
    sizes = []
    if faults.slice_size is not None:
        sizes.append(faults.slice_size)
    if faults.bandwidth is not None:
        sizes.append(max(1, int(faults.bandwidth * _BANDWIDTH_TICK)))
    return min(sizes, default=None)


@attrs.frozen(kw_only=True)
class ProxyStats:
    """A snapshot of a proxy's counters.

    Attributes:
        links_accepted: TCP connections accepted since the proxy started,
            including those refused because the proxy was down.
        links_refused: Connections reset at once because the proxy was down.
        links_open: Links accepted and not yet fully closed.
        bytes_upstream: Bytes forwarded from clients to the upstream server.
        bytes_downstream: Bytes forwarded from the upstream server to clients.
    """

    links_accepted: int
    links_refused: int
    links_open: int
    bytes_upstream: int
    bytes_downstream: int


@attrs.define
class _Counters:
    links_accepted: int = 0
    links_refused: int = 0
    bytes_forwarded: dict[Direction, int] = attrs.field(factory=lambda: dict.fromkeys(Direction, 0))


class _Ending(enum.Enum):
    """How a link's sockets are closed."""

    CLOSE = "close"  # FIN (or RST if the kernel still holds unread data)
    RESET = "reset"  # RST, via SO_LINGER with a zero timeout


@attrs.frozen
class _Arrival:
    """Something read from a link's sender, stamped for delayed delivery."""

    received_at: float
    jitter_draw: float

    def due(self, faults: Faults) -> float:
        return self.received_at + _chunk_delay(faults, self.jitter_draw)


@attrs.frozen
class _Data(_Arrival):
    data: bytes


@attrs.frozen
class _End(_Arrival):
    broken: bool  # True for a reset/error, False for an orderly EOF


def _arm_reset(stream: anyio.abc.SocketStream) -> None:
    """Make closing ``stream`` send a RST instead of a FIN."""
    try:
        raw = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    except OSError:
        pass  # the socket is already dead: nothing left to reset


async def _send_eof_quietly(stream: anyio.abc.SocketStream) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, OSError):
        await stream.send_eof()


async def _reset_stream(stream: anyio.abc.SocketStream) -> None:
    with anyio.CancelScope(shield=True):
        _arm_reset(stream)
        await stream.aclose()


class _Pipe:
    """Forwards one direction of a link, applying that direction's faults.

    A reader task stamps everything read from ``source`` and queues it; the
    writer delivers the queue to ``sink`` under the current faults.  Keeping the
    two apart lets reading continue while chunks wait out their latency.
    """

    def __init__(
        self,
        direction: Direction,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        *,
        faults: Faults,
        counters: _Counters,
        rng: random.Random,
        stop_link: Callable[[_Ending], None],
    ) -> None:
        self._direction = direction
        self._source = source
        self._sink = sink
        self._faults = faults
        self._faults_changed = anyio.Event()
        self._counters = counters
        self._rng = rng
        self._stop_link = stop_link
        self._forwarded = 0
        self._queued = 0  # bytes read and not yet forwarded
        self._drained = anyio.Event()
        self._limit_base = 0  # value of _forwarded when limit_data took its value
        self._last_write = (-math.inf, 0, -math.inf)  # (start, size, end)

    def apply(self, faults: Faults) -> None:
        """Switch to ``faults``, waking the writer if it is waiting."""
        if faults.limit_data != self._faults.limit_data:
            self._limit_base = self._forwarded
        self._faults = faults
        self._faults_changed.set()
        self._faults_changed = anyio.Event()

    async def run(self) -> None:
        """Forward until the sender's EOF is propagated; errors stop the link."""
        send, receive = anyio.create_memory_object_stream[_Arrival](_MAX_QUEUED_CHUNKS)
        with send, receive:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._read, send)
                await self._write(receive)

    async def _read(self, queue: MemoryObjectSendStream[_Arrival]) -> None:
        while True:
            try:
                data = await self._source.receive()
            except anyio.EndOfStream:
                await queue.send(_End(*self._stamp(), broken=False))
                return
            except (anyio.BrokenResourceError, OSError):
                await queue.send(_End(*self._stamp(), broken=True))
                return
            self._queued += len(data)
            await queue.send(_Data(*self._stamp(), data=data))
            while self._holding_too_much():
                await self._drained.wait()

    def _unqueue(self, size: int) -> None:
        """``size`` bytes left the queue (forwarded or dropped): read again if held back."""
        self._queued -= size
        self._drained.set()
        self._drained = anyio.Event()

    def _holding_too_much(self) -> bool:
        """Under a bandwidth cap, hold about half a second of transfer (64 KiB at least)."""
        bandwidth = self._faults.bandwidth
        return bandwidth is not None and self._queued > max(_MIN_HELD, bandwidth * _HELD_SECONDS)

    def _stamp(self) -> tuple[float, float]:
        return anyio.current_time(), self._rng.uniform(-1.0, 1.0)

    async def _write(self, queue: MemoryObjectReceiveStream[_Arrival]) -> None:
        async for item in queue:
            if isinstance(item, _End):
                await self._propagate_end(item)
                return
            assert isinstance(item, _Data)
            if not await self._forward(item):
                return

    async def _forward(self, chunk: _Data) -> bool:
        """Deliver one chunk; return False once the link is being stopped."""
        await self._sleep_until(chunk.due)
        remaining = chunk.data
        while remaining:
            await self._sleep_until(self._next_write_time)
            if self._faults.black_hole:
                self._unqueue(len(remaining))
                return True  # swallow the rest of the chunk
            if self._limit_reached():
                self._unqueue(len(remaining))
                return self._cut()
            piece, remaining = self._split(remaining)
            if not await self._send(piece):
                return False
            if self._limit_reached():
                return self._cut()
        return True

    def _split(self, data: bytes) -> tuple[bytes, bytes]:
        """Split off the next piece to write, honouring slices, bandwidth and limit."""
        size = _piece_size(self._faults)
        allowance = self._allowance()
        if allowance is not None:
            size = allowance if size is None else min(size, allowance)
        if size is None:
            return data, b""
        return data[:size], data[size:]

    async def _send(self, piece: bytes) -> bool:
        # Count the piece before awaiting: once the peer has it, a fault change made
        # in reaction (e.g. a new limit_data) must see it as already forwarded.
        start = anyio.current_time()
        self._unqueue(len(piece))
        self._forwarded += len(piece)
        self._counters.bytes_forwarded[self._direction] += len(piece)
        try:
            await self._sink.send(piece)
        except (anyio.BrokenResourceError, OSError):
            self._stop_link(_Ending.RESET)
            return False
        self._last_write = (start, len(piece), anyio.current_time())
        return True

    def _next_write_time(self, faults: Faults) -> float:
        start, size, end = self._last_write
        earliest = end + faults.slice_delay
        if faults.bandwidth is not None:
            earliest = max(earliest, start + size / faults.bandwidth)
        return earliest

    def _allowance(self) -> int | None:
        """Bytes still allowed by ``limit_data``, or ``None`` without a limit."""
        limit = self._faults.limit_data
        return None if limit is None else limit - (self._forwarded - self._limit_base)

    def _limit_reached(self) -> bool:
        allowance = self._allowance()
        return allowance is not None and allowance <= 0

    def _cut(self) -> bool:
        self._stop_link(_Ending.CLOSE)
        return False

    async def _propagate_end(self, end: _End) -> None:
        await self._sleep_until(lambda faults: end.due(faults) + faults.slow_close)
        while self._faults.black_hole:
            await self._faults_changed.wait()
        if end.broken:
            self._stop_link(_Ending.RESET)
            return
        try:
            await self._sink.send_eof()
        except (anyio.BrokenResourceError, OSError):
            self._stop_link(_Ending.RESET)

    async def _sleep_until(self, deadline: Callable[[Faults], float]) -> None:
        """Sleep until ``deadline(current faults)``, re-evaluated on every change."""
        while anyio.current_time() < (when := deadline(self._faults)):
            with anyio.CancelScope(deadline=when):
                await self._faults_changed.wait()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(
        self,
        client: anyio.abc.SocketStream,
        *,
        upstream: tuple[str, int],
        faults: Mapping[Direction, Faults],
        counters: _Counters,
        rng: random.Random,
    ) -> None:
        self._client = client
        self._server: anyio.abc.SocketStream | None = None
        self._upstream = upstream
        self._faults = dict(faults)
        self._counters = counters
        self._rng = rng
        self._pipes: dict[Direction, _Pipe] = {}
        self._scope = anyio.CancelScope()
        self._ending = _Ending.CLOSE
        self._closing = False
        self._closed = anyio.Event()

    def apply(self, direction: Direction, faults: Faults) -> None:
        self._faults[direction] = faults
        if pipe := self._pipes.get(direction):
            pipe.apply(faults)

    def stop(self, ending: _Ending) -> None:
        """Stop forwarding and close both sockets as ``ending`` says (RST wins)."""
        if ending is _Ending.RESET:
            self._ending = _Ending.RESET
        self._scope.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def run(self) -> None:
        """Connect upstream and forward both ways until the link ends, then close."""
        try:
            with self._scope:
                try:
                    self._server = await anyio.connect_tcp(*self._upstream)
                except OSError:
                    self._ending = _Ending.RESET  # refused upstream: refuse the client
                    return
                self._pipes = {
                    Direction.UPSTREAM: self._pipe(Direction.UPSTREAM, self._client, self._server),
                    Direction.DOWNSTREAM: self._pipe(
                        Direction.DOWNSTREAM, self._server, self._client
                    ),
                }
                async with anyio.create_task_group() as task_group:
                    for pipe in self._pipes.values():
                        task_group.start_soon(pipe.run)
        finally:
            await self.close()

    def _pipe(
        self, direction: Direction, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream
    ) -> _Pipe:
        return _Pipe(
            direction,
            source,
            sink,
            faults=self._faults[direction],
            counters=self._counters,
            rng=self._rng,
            stop_link=self.stop,
        )

    async def close(self) -> None:
        """Close both sockets (idempotent, shielded from cancellation)."""
        if self._closing:
            return
        self._closing = True
        with anyio.CancelScope(shield=True):
            streams = [s for s in (self._client, self._server) if s is not None]
            for stream in streams:
                if self._ending is _Ending.RESET:
                    _arm_reset(stream)
                else:
                    await _send_eof_quietly(stream)
            for stream in streams:
                await stream.aclose()
        self._closed.set()


class FaultProxy:
    """A TCP proxy on a loopback port that injects network faults, for tests.

    Use it as an async context manager.  On entry it listens on
    ``listen_host:listen_port`` (port 0 picks a free port; see :attr:`address`)
    and starts forwarding each accepted connection, a *link*, to ``upstream``
    through its own task group.  On exit it stops listening, closes every link
    (FIN) and waits for all of its tasks; nothing is left running.

    Faults (:meth:`set_faults`) and link actions (:meth:`reset_links`,
    :meth:`drop_links`, :meth:`set_down`) may be used at any time while the
    proxy runs and affect links that are already open.

    If the upstream server refuses a connection, the proxy resets the client's
    link.  A reset received from either peer is propagated to the other peer.

    Args:
        upstream: ``(host, port)`` of the server every link is forwarded to.
        listen_host: The address to listen on.
        listen_port: The port to listen on, 0 for an ephemeral port.
        seed: Seed for the jitter random number generator, for repeatable runs.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int | None = None,
    ) -> None:
        self._upstream = upstream
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._rng = random.Random(seed)
        self._faults = dict.fromkeys(Direction, Faults())
        self._down = False
        self._counters = _Counters()
        self._links: set[_Link] = set()
        self._listeners: list[anyio.abc.SocketListener] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._accepted_event = anyio.Event()  # replaced after each accept
        self._started = False

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._started:
            raise RuntimeError("a FaultProxy can only be started once")
        self._started = True
        multi = await anyio.create_tcp_listener(
            local_host=self._listen_host, local_port=self._listen_port
        )
        self._listeners = [
            listener
            for listener in multi.listeners
            if isinstance(listener, anyio.abc.SocketListener)
        ]
        for listener in self._listeners:
            # Accepted links inherit a small receive window: what the proxy holds back
            # (a bandwidth cap) stays with the sender, as on a slow link, instead of
            # vanishing into a loopback window of megabytes.
            listener.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_WINDOW
            )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        for listener in self._listeners:
            task_group.start_soon(self._accept_loop, listener)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._running_task_group()
        task_group.cancel_scope.cancel()
        try:
            # The body's own exception (if any) keeps propagating unwrapped;
            # only a failure of the proxy's tasks is raised from here.
            await task_group.__aexit__(None, None, None)
        finally:
            self._task_group = None
            with anyio.CancelScope(shield=True):
                for link in list(self._links):  # links whose task never started
                    await link.close()
                self._links.clear()
                for listener in self._listeners:
                    await listener.aclose()

    def _running_task_group(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise RuntimeError("the FaultProxy is not running (use `async with`)")
        return self._task_group

    # -- addresses -------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the proxy listens on; clients connect here."""
        self._running_task_group()
        sockaddr = self._listeners[0].extra(SocketAttribute.local_address)
        assert isinstance(sockaddr, tuple)
        return str(sockaddr[0]), int(sockaddr[1])

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return self.address[1]

    @property
    def upstream(self) -> tuple[str, int]:
        """The ``(host, port)`` links are forwarded to."""
        return self._upstream

    # -- faults ----------------------------------------------------------------

    def faults(self, direction: Direction) -> Faults:
        """The faults currently applied to ``direction``."""
        return self._faults[direction]

    def set_faults(self, faults: Faults, direction: Direction | None = None) -> None:
        """Apply ``faults`` to ``direction`` (both directions if ``None``).

        Replaces, rather than merges with, the direction's previous faults.
        Open links switch to them at once: a chunk waiting out its latency or a
        bandwidth or slice pause is re-timed against the new values.
        """
        directions = list(Direction) if direction is None else [direction]
        for each in directions:
            self._faults[each] = faults
            for link in self._links:
                link.apply(each, faults)

    def clear_faults(self) -> None:
        """Remove every fault in both directions."""
        self.set_faults(Faults())

    # -- link actions ----------------------------------------------------------

    @property
    def is_down(self) -> bool:
        """Whether the proxy is refusing connections (see :meth:`set_down`)."""
        return self._down

    async def set_down(self, down: bool) -> None:
        """Take the proxy down (``True``) or bring it back up (``False``).

        While down, the proxy keeps its port but resets (RST) every new
        connection as soon as it is accepted, so a client's connect may succeed
        and its first read or write then fails.  Going down also closes every
        open link like :meth:`drop_links` and returns once they are closed.
        """
        self._down = down
        if down:
            await self.drop_links()

    async def drop_links(self) -> None:
        """Close both sides of every open link (FIN); return once all are closed."""
        await self._stop_links(_Ending.CLOSE)

    async def reset_links(self) -> None:
        """Abort every open link with a TCP RST to both peers; return once done.

        Both peers then see a connection reset (``ConnectionResetError``, which
        anyio reports as :exc:`anyio.BrokenResourceError`).
        """
        await self._stop_links(_Ending.RESET)

    async def _stop_links(self, ending: _Ending) -> None:
        links = list(self._links)
        for link in links:
            link.stop(ending)
        for link in links:
            await link.wait_closed()

    async def wait_for_links(self, count: int) -> None:
        """Wait until at least ``count`` connections have been accepted in total.

        Connections refused while the proxy is down count too.
        """
        while self._counters.links_accepted < count:
            await self._accepted_event.wait()

    @property
    def stats(self) -> ProxyStats:
        """A snapshot of the proxy's counters."""
        return ProxyStats(
            links_accepted=self._counters.links_accepted,
            links_refused=self._counters.links_refused,
            links_open=len(self._links),
            bytes_upstream=self._counters.bytes_forwarded[Direction.UPSTREAM],
            bytes_downstream=self._counters.bytes_forwarded[Direction.DOWNSTREAM],
        )

    # -- internals -------------------------------------------------------------

    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        while True:
            client = await listener.accept()
            self._counters.links_accepted += 1
            self._accepted_event.set()
            self._accepted_event = anyio.Event()
            if self._down:
                self._counters.links_refused += 1
                await _reset_stream(client)
                continue
            link = _Link(
                client,
                upstream=self._upstream,
                faults=self._faults,
                counters=self._counters,
                rng=self._rng,
            )
            # Registered before its task starts, so that exit closes it even if
            # the task is cancelled before running.
            self._links.add(link)
            self._running_task_group().start_soon(self._run_link, link)

    async def _run_link(self, link: _Link) -> None:
        try:
            await link.run()
        finally:
            self._links.discard(link)
