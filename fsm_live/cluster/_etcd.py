"""The few etcd requests a worker makes, over aetcd's gRPC stubs (the only module that
imports aetcd and grpc; asyncio only, as grpc.aio is).

aetcd's generated stubs are used directly for the two streams: one persistent
``LeaseKeepAlive`` stream per worker (aetcd's ``refresh_lease`` opens a stream per
call) and one ``Watch`` stream over the cluster's prefix with the previous value
of deleted keys.  Every unary request is bounded by ``timeout``; the gRPC channel
reconnects within a second of the network coming back (its reconnect backoff is
capped at 1 s) and pings an idle connection every 5 s (etcd's default minimum,
``--grpc-keepalive-min-time``) to notice a dead one.

Errors: every failure of a request is raised as
:class:`~fsm_live.cluster.coordinator.CoordinatorUnavailable` (with gRPC's status
name, never a value of ours).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

from fsm_live.cluster.coordinator import CoordinatorUnavailable as EtcdUnavailable
from fsm_live.errors import MissingExtra

__all__ = ("EtcdClient", "KeepAliveStream", "is_delete", "prefix_end")

#: Seconds a closed client lets grpc's poller deliver its last completions.
_CLOSE_DRAIN: Final = 0.1
_CHANNEL_OPTIONS: Final = (
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A snapshot of 100,000 owner keys is about 4 MB, gRPC's default bound.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
)


# aetcd's stubs and grpc, imported by the first client (the `cluster` extra): this module
# imports without them, as every module of the package does without its extras.
rpc: Any = None
grpc: Any = None


def _load() -> None:
    """Import aetcd's stubs and grpc; MissingExtra (an ImportError) naming the extra."""
    global rpc, grpc
    if rpc is not None:
        return
    try:
        # The `cluster` extra, imported here only: without it, MissingExtra names it.
        import aetcd.rpc as aetcd_rpc  # type: ignore[import-untyped]
        import grpc as grpc_module  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtra(
            f"the etcd coordinator needs aetcd: pip install 'fsm_live[cluster]' ({exc})"
        ) from None
    rpc, grpc = aetcd_rpc, grpc_module


def prefix_end(prefix: bytes) -> bytes:
    """The end of the key range of every key starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _failed(exc: BaseException) -> EtcdUnavailable:
    if isinstance(exc, grpc.aio.AioRpcError):
        return EtcdUnavailable(f"{exc.code().name}: {exc.details()}")
    return EtcdUnavailable(type(exc).__name__)


class KeepAliveStream:
    """One ``LeaseKeepAlive`` stream: :meth:`send` a keepalive, :meth:`receive` the
    answers in order (their TTL: 0 once the lease is gone)."""

    def __init__(self, call: Any, lease: int) -> None:
        self._call = call
        self._request = rpc.LeaseKeepAliveRequest(ID=lease)

    async def send(self) -> None:
        try:
            await self._call.write(self._request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            raise _failed(exc) from None

    async def receive(self) -> int:
        try:
            reply = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from None
        if reply is grpc.aio.EOF:
            raise EtcdUnavailable("the keepalive stream ended")
        return int(reply.TTL)

    def cancel(self) -> None:
        self._call.cancel()


class EtcdClient:
    """A gRPC channel to one etcd endpoint (``host:port``); ``async with`` it."""

    def __init__(self, target: str, *, timeout: float) -> None:
        _load()
        self.target = target
        self.timeout = timeout
        self._channel: Any = None
        self._lease_channel: Any = None

    async def __aenter__(self) -> EtcdClient:
        # Two channels (two TCP connections): the leases' own, so that a watch stream
        # delivering 25,000 events cannot hold up a keepalive's answer behind HTTP/2's
        # flow control of a shared connection.
        self._channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        self._lease_channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        self._kv = rpc.KVStub(self._channel)
        self._lease = rpc.LeaseStub(self._lease_channel)
        self._watch = rpc.WatchStub(self._channel)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.close()
        await self._lease_channel.close()
        # grpc.aio's poller thread hands the closed calls' last completions to this
        # event loop a moment later; a loop closed before that (a process that runs
        # one loop after another: tests) gets them as "Event loop is closed".
        await asyncio.sleep(_CLOSE_DRAIN)

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            raise _failed(exc) from None

    # -- leases -----------------------------------------------------------------------

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: ``(id, ttl granted)``."""
        reply = await self._unary(self._lease.LeaseGrant, rpc.LeaseGrantRequest(TTL=ttl))
        return int(reply.ID), int(reply.TTL)

    async def revoke(self, lease: int) -> None:
        """Revoke ``lease`` (its keys are deleted); a lease already gone is no error."""
        try:
            await self._unary(self._lease.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lease))
        except EtcdUnavailable as exc:
            if "NOT_FOUND" not in str(exc):
                raise

    def keepalive(self, lease: int) -> KeepAliveStream:
        return KeepAliveStream(self._lease.LeaseKeepAlive(), lease)

    # -- keys -------------------------------------------------------------------------

    async def snapshot(self, prefix: bytes) -> tuple[int, list[Any]]:
        """``(revision, key-values)`` of every key under ``prefix``."""
        request = rpc.RangeRequest(key=prefix, range_end=prefix_end(prefix))
        reply = await self._unary(self._kv.Range, request)
        return int(reply.header.revision), list(reply.kvs)

    async def create(self, key: bytes, value: bytes, lease: int) -> int | None:
        """Put ``key`` on ``lease`` if it does not exist; its create revision, or None
        if it existed."""
        compare = rpc.Compare(
            key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
        )
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))
        reply = await self._unary(self._kv.Txn, rpc.TxnRequest(compare=[compare], success=[put]))
        return int(reply.header.revision) if reply.succeeded else None

    async def replace(self, key: bytes, value: bytes, lease: int, revision: int) -> bool:
        """Put ``key`` (on ``lease``) if its create revision is ``revision``."""
        compare = rpc.Compare(
            key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=revision
        )
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))
        reply = await self._unary(self._kv.Txn, rpc.TxnRequest(compare=[compare], success=[put]))
        return bool(reply.succeeded)

    async def delete(self, key: bytes, revision: int) -> bool:
        """Delete ``key`` if its create revision is ``revision`` (still the same hold)."""
        compare = rpc.Compare(
            key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=revision
        )
        delete = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))
        reply = await self._unary(self._kv.Txn, rpc.TxnRequest(compare=[compare], success=[delete]))
        return bool(reply.succeeded)

    # -- watching ---------------------------------------------------------------------

    async def watch(self, prefix: bytes, start_revision: int) -> AsyncIterator[Any]:
        """Watch responses for every key under ``prefix`` from ``start_revision``, with
        the previous value of each deleted key.  Raises EtcdUnavailable when the
        stream breaks, is cancelled by etcd, or the revision was compacted."""
        call = self._watch.Watch()
        try:
            create = rpc.WatchCreateRequest(
                key=prefix,
                range_end=prefix_end(prefix),
                start_revision=start_revision,
                prev_kv=True,
            )
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    raise EtcdUnavailable("the watch stream ended")
                if reply.compact_revision or reply.canceled:
                    raise EtcdUnavailable("the watch was cancelled (revision compacted?)")
                if reply.events:
                    yield reply
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from None
        finally:
            call.cancel()


def is_delete(event: Any) -> bool:
    """Whether a watch event is a deletion (else a put)."""
    return bool(event.type == rpc.Event.DELETE)
